"""``POST /v1/corrections``: save the right answer of a logged answer from a script or a tool.

    curl http://127.0.0.1:7860/v1/corrections -H "Authorization: Bearer $CHATBOT_API_KEY" \\
         -H 'Content-Type: application/json' -d '{"turn_id": 12, "text": "The right answer."}'

The answer's ``turn_id`` is in every chat completion's response. Who may call the route is
``app.auth``'s one rule (with a login or API key configured, every route needs one); the
correction's author is the caller it found (a user name, or ``api-key``), or ``api`` on an
open server, the name the log gives such a caller's sessions.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.api_body import read_json
from app.api_schema import API_CLIENT, RequestError
from chatbot.errors import InputError
from chatbot.logs import ConversationLog


CORRECTION_BODY = '{"turn_id": N, "text": "the right answer"}'


def create_corrections_router(log: ConversationLog | None) -> APIRouter:
    """The route over the engine's log (``None``, logging off: it answers why it can't)."""
    router = APIRouter(prefix="/v1")

    @router.post("/corrections")
    async def post_correction(request: Request) -> JSONResponse:
        try:
            turn_id, text = _parse(await read_json(request, CORRECTION_BODY))
            if log is None:
                raise RequestError("conversation logging is off (logging.enabled), so there are "
                                   "no answers to correct", code="logging_off", status=409)
            author = getattr(request.state, "caller", None) or API_CLIENT
            correction = await asyncio.to_thread(log.add_correction, turn_id, text, author)
        except RequestError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        except InputError as exc:
            return JSONResponse(RequestError(str(exc)).body(), status_code=400)
        return JSONResponse(asdict(correction), status_code=201)

    return router


def _parse(record: object) -> tuple[int, str]:
    if not isinstance(record, dict) or "turn_id" not in record:
        raise RequestError('expected {"turn_id": N, "text": "..."}: turn_id is missing',
                           param="turn_id")
    if type(record["turn_id"]) is not int:
        raise RequestError(f"turn_id must be a whole number (as `chatbot logs show` lists "
                           f"them), not {json.dumps(record['turn_id'])[:40]}", param="turn_id")
    if not isinstance(record.get("text"), str):
        raise RequestError("text, the corrected answer, is missing or not a string", param="text")
    return record["turn_id"], record["text"]
