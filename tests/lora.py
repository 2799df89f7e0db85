"""A LoRA adapter for a test model, saved like a trained one, that visibly changes its output."""

from pathlib import Path


def save_lora_adapter(base_dir: Path, target: Path) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir),
                                LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                           init_lora_weights=False))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.add_(0.5)  # make the adapter change the output
    peft_model.save_pretrained(target)
    return target
