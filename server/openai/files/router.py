"""/v1/files: upload, list, retrieve, content and delete (batch input and output files)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile

from hearth.runtime.batch.lines import not_jsonl
from hearth.runtime.batch.store import BatchStore
from hearth.runtime.errors import InvalidRequest
from hearth.server.errors import PayloadTooLarge
from hearth.server.openai.files.protocol import FileDeleted, FileList, FileObject
from hearth.server.state import server_state

router = APIRouter()


def _store(request: Request) -> BatchStore:
    return server_state(request).batch_runner().store


@router.post("/v1/files")
async def upload_file(
    request: Request,
    file: Annotated[UploadFile, File()],
    purpose: Annotated[str, Form()],
) -> FileObject:
    if purpose != "batch":
        raise InvalidRequest(
            f"Invalid purpose '{purpose}': this server keeps files for batches only ('batch').",
            param="purpose",
        )
    limit = server_state(request).settings.max_file_bytes
    content = await file.read(limit + 1)
    if len(content) > limit:
        raise PayloadTooLarge(
            f"The file is larger than this server's limit of {limit} bytes (--max-file-bytes)."
        )
    problem = await asyncio.to_thread(not_jsonl, content)
    if problem is not None:
        raise InvalidRequest(problem, param="file")
    store = _store(request)
    stored = await asyncio.to_thread(
        store.add_file, file.filename or "upload.jsonl", purpose, content
    )
    return FileObject.of(stored)


@router.get("/v1/files")
async def list_files(
    request: Request,
    purpose: str | None = None,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 10000,
    order: Literal["asc", "desc"] = "desc",
) -> FileList:
    found, more = _store(request).files(
        purpose=purpose, after=after, limit=limit, ascending=order == "asc"
    )
    data = [FileObject.of(stored) for stored in found]
    return FileList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=more,
    )


@router.get("/v1/files/{file_id}")
async def retrieve_file(file_id: str, request: Request) -> FileObject:
    return FileObject.of(_store(request).file(file_id))


@router.get("/v1/files/{file_id}/content")
async def file_content(file_id: str, request: Request) -> Response:
    content = await asyncio.to_thread(_store(request).content, file_id)
    return Response(content, media_type="application/octet-stream")


@router.delete("/v1/files/{file_id}")
async def delete_file(file_id: str, request: Request) -> FileDeleted:
    _store(request).delete_file(file_id)
    return FileDeleted(id=file_id)
