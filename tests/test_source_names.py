"""Documents are named by their place among the bot's documents wherever the bot shows them,
never by the server's absolute path (which tells a visitor how the server is laid out)."""

from pathlib import Path

from app.build import bot_index
from chatbot.config_file import load_config
from chatbot.engine import Engine
from chatbot.indexing import IndexSearch, sync_paths
from chatbot.logs import ConversationLog
from chatbot.source_names import SourceNames
from chatbot.variants import Variant
from index_helpers import write_bot


def test_a_file_is_named_from_the_folder_holding_its_root_or_by_its_name() -> None:
    names = SourceNames((Path("/srv/bot/docs"), Path("/srv/data/uploads"), Path("/srv/faq.md")))
    assert names.name("/srv/bot/docs/leave/apply.md") == "docs/leave/apply.md"
    assert names.name("/srv/data/uploads/form.pdf") == "uploads/form.pdf"
    assert names.name("/srv/faq.md") == "faq.md"
    assert names.name("/elsewhere/secret/notes.md") == "notes.md"
    assert names.name("docs/already-relative.md") == "docs/already-relative.md"


def test_the_prompt_the_log_and_the_answer_name_documents_without_server_paths(tmp_path,
                                                                                echo) -> None:
    config = load_config(write_bot(tmp_path, {"ports.md": "# Ports\n\nThe UI listens on 7860."}))
    sync_paths(bot_index(config))
    log = ConversationLog(tmp_path / "logs.sqlite")
    engine = Engine({"prompt": Variant("prompt", "base", "rag", True)}, lambda model: echo,
                    search=IndexSearch(bot_index(config)), log=log)
    reply = engine.answer("s", "which port does the UI use?", "prompt").result()
    assert [hit["source"] for hit in reply.sources()] == ["docs/ports.md"]
    assert "[1] docs/ports.md (Ports)" in reply.messages[-1].content
    assert str(tmp_path) not in str(reply.as_dict())
    [logged] = [turn for turn in log.conversation("s").turns if turn.role == "assistant"]
    assert [hit["source"] for hit in logged.hits] == ["docs/ports.md"]


def test_the_chat_names_files_of_a_folder_synced_by_path_from_that_folder(tmp_path,
                                                                          echo) -> None:
    """Two `faq.md` of a folder synced by path were both `[n] faq.md` in the prompt, so the
    model and the user could not tell which team's answer a passage was."""
    config = load_config(write_bot(tmp_path, {}))
    for team in ("sales", "support"):
        (tmp_path / "wiki" / team).mkdir(parents=True)
        (tmp_path / "wiki" / team / "faq.md").write_text(f"# FAQ\n\n{team} refunds in May.\n")
    sync_paths(bot_index(config), [tmp_path / "wiki"])
    engine = Engine({"prompt": Variant("prompt", "base", "rag", True)}, lambda model: echo,
                    search=IndexSearch(bot_index(config)))
    reply = engine.answer("s", "when are refunds?", "prompt").result()
    assert sorted(hit["source"] for hit in reply.sources()) == [
        "wiki/sales/faq.md", "wiki/support/faq.md"]
    assert "wiki/support/faq.md (FAQ)" in reply.messages[-1].content
