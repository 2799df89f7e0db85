"""The Training tab: build a dataset from the conversation log, then fine-tune a variant on it.

Building runs in the server (``training.data.build.build_dataset``, a few seconds); a training run
is a ``chatbot train`` child process (``app.training_job``) whose loss the page polls. Run it
with ``chatbot serve`` (logging on).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
from dataclasses import replace
from pathlib import Path

import gradio as gr
import pandas as pd
from PIL import Image

from chatbot.config import BotConfig
from chatbot.engine import Engine
from chatbot.paths import DataPaths
from chatbot.errors import ChatbotError
from app.training_job import RunRequest, TrainingJob

FEEDBACK = [("thumbs-up only", "up"), ("all but thumbed-down", "not_down"), ("all", "all")]
METHODS = ["lora", "freeze", "full"]
CONTROLS = {"data.feedback": '"Keep answers rated"', "data.min_tokens": '"Min tokens"',
            "data.max_tokens": '"Max tokens"', "data.validation_share": '"Validation share"'}
"""The config keys a refused build names -> the controls of this tab that set them."""
CONFIG_KEYS = re.compile(r"\b(relax|lower|raise) (data\.\w+(?:, data\.\w+)*) in the config")
TRANSCRIPT_FILES = [".jsonl", ".ndjson", ".json", ".csv", ".tsv"]
"""What ``training.data.transcripts.read_file`` reads: the file chooser offers these."""
DATASET_COLUMNS = ["dataset", "built", "train", "validation"]
POLL_S = 3.0
CHART_COLORS = {"train": "#4c72b0", "validation": "#dd8452"}
_IMAGE_LINE = re.compile(r"^!\[[^\]]*\]\([^)]*\)\s*$", re.MULTILINE)


class TrainingActions:
    """The tab's event functions, callable without a server (the tests call them directly).

    ``engine`` (optional) gets a newly registered adapter as a variant as soon as its run ends.
    """

    def __init__(self, config: BotConfig, job: TrainingJob, engine: Engine | None = None) -> None:
        self.config = config
        self.job = job
        self.engine = engine
        self.announced: str | None = None
        """The finished run whose adapter was already added to the engine's variants."""
        self.on_page_load: list[tuple] = []
        """(function, outputs) pairs ``build_app`` runs when a page opens: the datasets list
        and the run's status and chart."""

    # -- datasets --------------------------------------------------------------------------

    def datasets(self, chosen: str | None = None) -> tuple:
        """(report, histogram, table, picker): the picker selects ``chosen`` (the dataset just
        built), else the newest, and the report is that dataset's, in the same event: an event
        chained on the picker's change could race the page's stream (see ``ChatActions``)."""
        from app.build import data_settings
        from training.data.build import list_datasets, newest_dataset

        everything = list_datasets(data_settings(self.config))
        found = [d for d in everything if "problem" not in d]
        rows = [[d["name"], f"not usable: {d['problem']}", "", ""] if "problem" in d else
                [d["name"], d["created_at"], d["train"], d["validation"]] for d in everything]
        names = [d["name"] for d in found]
        picked = chosen if chosen in names else newest_dataset(found)
        return (*self.report(picked), rows, gr.update(choices=names, value=picked))

    def build(self, name: str, use_log: bool, files: list[str] | None, feedback: str,
              min_tokens: float | None, max_tokens: float | None, near_duplicates: float | None,
              validation_share: float, overwrite: bool = False) -> tuple:
        """Build dataset ``name``; returns (summary, report, histogram, table, picker, files):
        the files box is emptied once its uploads are the dataset's; a refused build leaves
        them in the box for the next try."""
        from app.build import data_settings
        from training.data.build import build_dataset

        name = (name or "").strip()
        moved: dict[Path, Path] = {}
        try:
            if not name:
                raise ChatbotError("give the dataset a name first")
            if not use_log and not files:
                raise ChatbotError("tick the conversation log or upload transcript files")
            sources = (["logs"] if use_log else []) + [str(self._keep(Path(f), moved))
                                                       for f in files or []]
            options = self.options(feedback, min_tokens, max_tokens, near_duplicates,
                                   validation_share)
            summary = build_dataset(data_settings(self.config), name, sources, overwrite=overwrite,
                                    options=options)
        except ChatbotError as exc:
            _put_back(moved)
            gr.Warning(self._shown(str(exc)))
            return (f"**Not built:** {self._shown(str(exc))}", *self.datasets(), gr.update())
        for upload in files or []:  # an upload of a file kept before: its copy is not needed
            Path(upload).unlink(missing_ok=True)
        lines = summary.lines()
        warnings = [f"- **Warning:** {warning}" for warning in summary.warnings]
        text = self._shown("\n".join(["**" + lines[0] + "**", *warnings, "```", *lines[1:],
                                      "```"]))
        return (text, *self.datasets(chosen=name), None)

    def options(self, feedback: str, min_tokens: float | None, max_tokens: float | None,
                near_duplicates: float | None, validation_share: float):
        """The config's ``data:`` settings with the tab's choices applied."""
        from app.build import options_from_config

        base = options_from_config(self.config)
        low = int(min_tokens) if min_tokens is not None else base.min_tokens
        high = int(max_tokens) if max_tokens is not None else base.max_tokens
        if low < 0 or high < 1 or low > high:
            raise ChatbotError(f"token limits {low}..{high} select nothing; the minimum must be "
                               "0 or more and at most the maximum")
        if near_duplicates is not None and not 0 <= near_duplicates <= 1:
            raise ChatbotError(f"near-duplicate threshold {near_duplicates} must be between 0 "
                               "(exact duplicates only) and 1")
        if not 0 <= validation_share < 1:
            raise ChatbotError(f"validation share {validation_share} must be in [0, 1)")
        return replace(base, feedback=feedback, min_tokens=low, max_tokens=high,
                       near_duplicate_threshold=near_duplicates or None,
                       validation_share=float(validation_share))

    def report(self, name: str | None) -> tuple[str, Image.Image | None]:
        """A dataset's ``data_report.md`` (image links removed: the histogram is shown beside)
        and its token-length chart, as an image: the web server hands out no file of the data
        dir."""
        from app.build import data_settings
        from training.data.build import dataset_path

        if not name:
            return "", None
        folder = dataset_path(data_settings(self.config), name)
        report, histogram = folder / "data_report.md", folder / "token_lengths.png"
        if not report.is_file():
            return f"No report for dataset `{name}`.", None
        text = self._shown(_IMAGE_LINE.sub("", report.read_text(encoding="utf-8")))
        return text, _read_image(histogram) if histogram.is_file() else None

    def _shown(self, text: str) -> str:
        """``text`` as the page shows it: paths under the data folder relative to it (the
        server's layout is no visitor's business), and the tab's own controls where the
        command line's flags are named."""
        return (self._controls_for_keys(text)
                .replace(f"{self.config.data_path.resolve()}{os.sep}", "")
                .replace(f"{self.config.data_path}{os.sep}", "")
                .replace("pass --overwrite", "tick \"Replace a dataset of the same name\"")
                .replace("import transcripts with --from FILE", "add transcript files above"))

    @staticmethod
    def _controls_for_keys(text: str) -> str:
        """``relax data.feedback, data.corrections in the config`` with the tab's controls
        named where it has them: 'relax "Keep answers rated" above and data.corrections in the
        config'."""
        def named(match: re.Match) -> str:
            keys = match.group(2).split(", ")
            here = [CONTROLS[key] for key in keys if key in CONTROLS]
            config = [key for key in keys if key not in CONTROLS]
            return f"{match.group(1)} " + " and ".join(
                ([f"{', '.join(here)} above"] if here else [])
                + ([f"{', '.join(config)} in the config"] if config else []))

        return CONFIG_KEYS.sub(named, text)

    def _keep(self, upload: Path, moved: dict[Path, Path]) -> Path:
        """Uploads are moved out of Gradio's cache under the data dir (a copy would leave the
        cached file a day), so the manifest names a file that stays: in a folder named by the
        file's sha256, so an upload of the same name with other content (anyone's, on an open
        server) never replaces the file an earlier dataset was built from; the same file
        uploaded again is kept once. A moved file joins ``moved`` (target -> upload). Through
        the server, Gradio passes only files uploaded to it (``app.ui.mount_ui``)."""
        from chatbot.models import file_sha256

        if not upload.is_file():
            raise ChatbotError(f"{upload.name}: no longer on the server (an upload is kept once "
                               "a dataset is built from it); upload it again")
        folder = DataPaths(self.config.data_path).transcripts / file_sha256(upload)[:16]
        target = folder / upload.name
        if not target.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            shutil.move(upload, target)
            moved[target] = upload
        return target

    # -- training runs ---------------------------------------------------------------------

    def start(self, dataset: str | None, name: str, method: str, epochs: float | None,
              learning_rate: float | None, batch_size: float | None, max_steps: float | None,
              lora_r: float | None, eval_every: float | None = None,
              resume: bool = False) -> str:
        """Launch ``chatbot train`` in a child process; refused while a run is going."""
        try:
            if not dataset:
                raise ChatbotError("pick a dataset (build one above first)")
            if not (name or "").strip():
                raise ChatbotError("give the adapter a name: it becomes the variant's name")
            from app.build import check_adapter_name

            check_adapter_name(self.config, name.strip())
            request = RunRequest(dataset, name.strip(), method, _positive(epochs, float),
                                 _positive(learning_rate, float), _positive(batch_size, int),
                                 _positive(max_steps, int), _positive(lora_r, int),
                                 _positive(eval_every, int), resume=bool(resume))
            self.job.start(request)
        except ChatbotError as exc:
            gr.Warning(self._shown(str(exc)))
            return self._shown(f"**Not started:** {exc}\n\n{self.job.status().message}")
        self.announced = None
        return f"Started: `{' '.join(request.arguments())}`"

    def stop(self) -> str:
        if not self.job.stop():
            return "No run is training."
        return self.job.status().message

    def poll(self) -> tuple[str, pd.DataFrame | None]:
        """The run's status and its loss curve (train and validation loss by step)."""
        status = self.job.status()
        text = self._shown(f"**{status.state}**: {status.message}")
        if status.state == "finished":
            text += " " + self._serve(status.name)
        return text, chart_value(self.job.metrics())

    def _serve(self, name: str) -> str:
        """Add the new adapter to the engine's variants (once), and say where to pick it."""
        if self.engine is None:
            return f"Restart `chatbot serve` to chat with variant **{name}**."
        if self.announced != name:
            self.engine.add_new_variants()
            self.announced = name
        if name in self.engine.variants:
            return (f"Variant **{name}** is served now (API model `{name}`); reload the page "
                    "to pick it in the Chat tab.")
        return f"Restart `chatbot serve` to chat with variant **{name}**."


def _put_back(moved: dict[Path, Path]) -> None:
    """A refused build's uploads go back where Gradio put them: no dataset names them, and the
    page's files box still does, for the next try."""
    for target, upload in moved.items():
        shutil.move(target, upload)
        with contextlib.suppress(OSError):  # its folder, unless another file is in it
            target.parent.rmdir()


def _positive(value: float | None, kind: type) -> float | int | None:
    """A number field's value; empty or 0 means the config's default. The command checks the
    rest as it checks its flags, but an infinite or NaN value can't even be passed as one."""
    if value and not math.isfinite(value):
        raise ChatbotError(f"{value} is not a number a run can use; give a finite number, or 0 "
                           "for the config's default")
    return kind(value) if value else None


def chart_value(records: list[dict]) -> pd.DataFrame | None:
    """The plot's value: ``None`` (an empty chart) until both curves have a point, because
    gradio's line plot fixes its axes and series from the first data it draws."""
    frame = loss_frame(records)
    return frame if set(frame["series"]) == set(CHART_COLORS) else None


def loss_frame(records: list[dict]) -> pd.DataFrame:
    """Long-format rows (step, loss, series) for the line plot."""
    rows = [(r["step"], r[key], series) for r in records
            for key, series in (("train_loss", "train"), ("val_loss", "validation"))
            if key in r]
    step, loss, series = zip(*rows) if rows else ((), (), ())
    # typed even when empty: the plot reads numeric columns as numbers, not as categories
    return pd.DataFrame({"step": pd.Series(step, dtype="int64"),
                         "loss": pd.Series(loss, dtype="float64"),
                         "series": pd.Series(series, dtype="str")})


def _read_image(path: Path) -> Image.Image:
    image = Image.open(path)
    image.load()  # reads the pixels and closes the file
    return image


def build_training_tab(config: BotConfig, config_path: Path, engine: Engine | None = None,
                       job: TrainingJob | None = None) -> TrainingActions:
    """Lay out the Training tab inside the current ``gr.Blocks`` and wire its events.

    ``config_path`` is the YAML the server was started with: training runs read it again.
    """
    actions = TrainingActions(config, job or TrainingJob(config_path, config.data_path), engine)
    dataset_inputs = _dataset_section(actions)
    _run_section(actions, dataset_inputs)
    return actions


def _dataset_section(actions: TrainingActions) -> gr.Dropdown:
    data = actions.config.data
    gr.Markdown("### 1. Dataset from the conversation log")
    with gr.Row():
        with gr.Column():
            name = gr.Textbox(label="Dataset name", placeholder="support-v1",
                              elem_id="cb-dataset-name")
            use_log = gr.Checkbox(True, label="Conversation log (answers with their feedback)")
            files = gr.File(file_count="multiple", file_types=TRANSCRIPT_FILES,
                            label="Transcript files too (optional): OpenAI or ShareGPT chats "
                                  "as JSONL or a JSON array (.json), question/answer CSV or TSV")
        with gr.Column():
            feedback = gr.Radio(FEEDBACK, value=data.feedback, label="Keep answers rated")
            with gr.Row():
                min_tokens = gr.Number(data.min_tokens, label="Min tokens", precision=0)
                max_tokens = gr.Number(data.max_tokens, label="Max tokens", precision=0)
            near = gr.Number(data.near_duplicate_threshold or 0, minimum=0, maximum=1,
                             label="Near-duplicate threshold (0: exact duplicates only)")
            share = gr.Slider(0, 0.5, value=data.validation_share, step=0.05,
                              label="Validation share")
            overwrite = gr.Checkbox(False, label="Replace a dataset of the same name")
            build = gr.Button("Build dataset", variant="primary", elem_id="cb-build")
    summary = gr.Markdown(elem_id="cb-build-summary")
    with gr.Accordion("Data report", open=True):
        histogram = gr.Image(type="pil", format="png", label="Token lengths", interactive=False,
                             height=380, buttons=["download"])
        report = gr.Markdown(elem_id="cb-data-report")
    table = gr.Dataframe(headers=DATASET_COLUMNS, label="Datasets", interactive=False)
    picker = gr.Dropdown([], label="Dataset to train on", elem_id="cb-train-dataset")
    build.click(actions.build, [name, use_log, files, feedback, min_tokens, max_tokens, near,
                                share, overwrite],
                [summary, report, histogram, table, picker, files])
    picker.input(actions.report, [picker], [report, histogram])
    actions.on_page_load.append((actions.datasets, [report, histogram, table, picker]))
    return picker


def _run_section(actions: TrainingActions, picker: gr.Dropdown) -> None:
    train = actions.config.training
    gr.Markdown("### 2. Fine-tune a variant")
    with gr.Row():
        name = gr.Textbox(label="Adapter name (the new variant's name)", elem_id="cb-adapter")
        method = gr.Radio(METHODS, value=train.method, label="Method")
    with gr.Row():
        epochs = gr.Number(train.epochs, label="Epochs")
        lr = gr.Number(train.learning_rate, label="Learning rate")
        batch = gr.Number(train.batch_size, label="Batch size", precision=0)
        steps = gr.Number(train.max_steps or 0, label="Max steps (0: the config's)", precision=0)
        rank = gr.Number(train.lora_r, label="LoRA rank", precision=0)
        every = gr.Number(train.eval_every, label="Validate every N steps", precision=0)
    resume = gr.Checkbox(False, label="Resume: continue the stopped or interrupted run of this "
                                      "name from its last checkpoint")
    with gr.Row():
        start = gr.Button("Start training", variant="primary", elem_id="cb-train-start")
        stop = gr.Button("Stop", variant="stop", elem_id="cb-train-stop")
    gr.Markdown("A stopped run keeps its last checkpoint (saved at each validation): tick "
                "Resume and start it again to continue where it left off.")
    status = gr.Markdown(elem_id="cb-train-status")
    chart = gr.LinePlot(None, x="step", y="loss", color="series",
                        color_map=CHART_COLORS, title="Loss per supervised token",
                        height=320, elem_id="cb-loss")
    settings = [picker, name, method, epochs, lr, batch, steps, rank, every, resume]
    start.click(actions.start, settings, status)
    stop.click(actions.stop, None, status)
    gr.Timer(POLL_S).tick(actions.poll, None, [status, chart], show_progress="hidden")
    actions.on_page_load.append((actions.poll, [status, chart]))

