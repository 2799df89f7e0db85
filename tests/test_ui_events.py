"""The web page's events, all tabs at once: each user action is one server event.

Gradio's page receives every event's messages on one stream, which the server closes once the
page has nothing pending; an event sent just as it closes is answered on the closed stream and
never reaches the page. A second event chained on the first (a listener on the ``change`` of a
component that the first event sets, or two listeners on one click) opens that window on every
action, so the page would miss answers, details or reports under load (see ``ChatActions``).
"""

from chatbot.config_file import load_config
from chatbot.engine import Engine
from chatbot.logs import ConversationLog
from chatbot.variants import Variant


def test_no_user_action_sets_off_a_second_server_event(tmp_path, echo) -> None:
    from app.build import bot_documents
    from app.server import ab_parts, training_parts
    from app.ui import build_app

    config_path = tmp_path / "bot.yaml"
    config_path.write_text(f"data_dir: {tmp_path / 'data'}\nmodels:\n  embedder: \"hash:64\"\n"
                           "variants:\n  prompt: {}\n  plain: {template: plain, retrieval: false}"
                           "\nab:\n  enabled: true\n")
    config = load_config(config_path)
    engine = Engine({"prompt": Variant("prompt", "base", "rag", True),
                     "plain": Variant("plain", "base", "plain", False)}, lambda model: echo,
                    log=ConversationLog(tmp_path / "logs.sqlite"))
    assign, _, ab_tabs = ab_parts(engine, config)
    app = build_app(engine, documents=bot_documents(config), assign_variant=assign,
                    tabs=[*ab_tabs, *training_parts(engine, config, config_path)])
    events = [d for d in app.config["dependencies"] if d["backend_fn"]]
    labels = {b.label for b in app.blocks.values() if type(b).__name__ == "Tab"}
    assert {"Chat", "Documents", "Review", "Arena", "Dashboard", "Training"} <= labels
    # the page's opening starts several events at once, none after another
    triggers = [tuple(target) for event in events for target in event["targets"]
                if target[1] != "load"]
    assert len(triggers) == len(set(triggers))  # one event a trigger
    written = {component for event in events for component in event["outputs"]}
    chained = [(event["api_name"], target) for event in events for target in event["targets"]
               if target[1] == "change" and target[0] in written]
    assert chained == []
