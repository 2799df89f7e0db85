"""Uploads to the web UI can't fill the server's disk, however many come: one that would leave
less than ``index.min_free_disk_mb`` free is refused as it arrives and leaves nothing behind."""

import shutil

import httpx
from fastapi.testclient import TestClient

from app.build import bot_documents
from app.server import create_server_app
from chatbot.config_file import load_config
from chatbot.engine import Engine
from chatbot.variants import Variant
from server_app import config_file, credentials  # noqa: F401 (fixtures)


def server(config_file, echo, margin_mb: float | None):
    margin = f"  min_free_disk_mb: {margin_mb}\n" if margin_mb is not None else ""
    config_file.write_text(f'models:\n  embedder: "hash:64"\nindex:\n{margin}  max_file_mb: 1\n')
    config = load_config(config_file)
    engine = Engine({"prompt": Variant("prompt", "base", "rag", True)}, lambda m: echo)
    return create_server_app(engine, config, documents=bot_documents(config),
                             config_path=config_file)


def test_an_upload_that_would_leave_the_disk_below_its_margin_is_refused(
        config_file, echo, credentials, tmp_path, monkeypatch) -> None:
    """Each upload was held only to index.max_upload_mb: a stranger uploading again and again
    (never indexing) filled Gradio's cache, and the disk, for a day."""
    cache = tmp_path / "gradio"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    disk_mb = shutil.disk_usage(tmp_path).total / 2**20
    part = b"# A\n" * 2000
    with TestClient(server(config_file, echo, margin_mb=round(disk_mb + 1))) as client:
        refused = [client.post("/gradio_api/upload", files={"files": ("a.md", part)})]
        body = httpx.Request("POST", "http://x", files={"files": ("b.md", part)})
        refused.append(client.post(  # sent without a length: refused as it arrives
            "/gradio_api/upload", content=iter([body.read()[:4096], body.read()[4096:]]),
            headers={"content-type": body.headers["content-type"]}))
    full = {"detail": f"the server keeps {round(disk_mb + 1)} MB of its disk free "
                      "(index.min_free_disk_mb) and this upload would leave less; remove "
                      "documents no longer needed, or ask the server's admin to free space"}
    assert [(r.status_code, r.json()) for r in refused] == [(507, full), (507, full)]
    assert not [p for p in cache.rglob("*") if p.is_file()]
    with TestClient(server(config_file, echo, margin_mb=None)) as client:  # the default
        fine = client.post("/gradio_api/upload", files={"files": ("a.md", part)})
    assert fine.status_code == 200


def test_uploads_arriving_together_are_held_to_the_margin_together(
        config_file, echo, credentials, tmp_path, monkeypatch) -> None:
    """Each upload was checked against the room the disk had as it started: two arriving
    together could each fit, and together leave less than index.min_free_disk_mb free. Here
    the first upload sends its start and waits while a second is taken whole; the rest of the
    first would pass the margin, so it is refused and leaves no file behind."""
    import asyncio

    cache = tmp_path / "gradio"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    # either upload fits the room, both don't, with 24 MB to spare either way for what the
    # machine's other work writes or deletes before the first upload starts
    room_mb, size = 72, 48 * 2**20
    free_mb = shutil.disk_usage(tmp_path).free / 2**20
    config_file.write_text(f'models:\n  embedder: "hash:64"\nindex:\n'
                           f'  min_free_disk_mb: {free_mb - room_mb:.0f}\n  max_file_mb: 50\n')
    config = load_config(config_file)
    engine = Engine({"prompt": Variant("prompt", "base", "rag", True)}, lambda m: echo)
    app = create_server_app(engine, config, documents=bot_documents(config),
                            config_path=config_file)
    form = httpx.Request("POST", "http://x", files={"files": ("a.md", b"A" * size)})
    first = form.read()

    async def together() -> list:
        started, go_on = asyncio.Event(), asyncio.Event()

        async def first_body():  # sent without a length, as a stream
            yield first[:65536]
            started.set()  # asked for more: its start has been read
            await go_on.wait()
            yield first[65536:]

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            sending = asyncio.create_task(client.post(
                "/gradio_api/upload", content=first_body(),
                headers={"content-type": form.headers["content-type"]}))
            await started.wait()
            second = await client.post("/gradio_api/upload",
                                        files={"files": ("b.md", b"B" * size)})
            go_on.set()
            return [await sending, second]

    first_answer, second_answer = asyncio.run(together())
    assert second_answer.status_code == 200
    assert first_answer.status_code == 507, first_answer.text
    assert first_answer.json()["detail"].startswith(
        f"the server keeps {free_mb - room_mb:.0f} MB of its disk free (index.min_free_disk_mb)")
    assert [p.name for p in cache.rglob("*") if p.is_file()] == ["b.md"]
