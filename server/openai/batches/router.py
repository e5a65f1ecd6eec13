"""/v1/batches: create, retrieve, list and cancel (the runner is runtime/batch/runner.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from hearth.runtime.batch.runner import BatchRunner
from hearth.runtime.batch.store import BatchRecord
from hearth.server.openai.batches.protocol import Batch, BatchCreateRequest, BatchList
from hearth.server.state import server_state

router = APIRouter()


def _runner(request: Request) -> BatchRunner:
    return server_state(request).batch_runner()


def _batch(runner: BatchRunner, record: BatchRecord) -> Batch:
    store = runner.store
    return Batch.of(record, store.counts(record.id), store.usage(record.id))


@router.post("/v1/batches")
async def create_batch(body: BatchCreateRequest, request: Request) -> Batch:
    runner = _runner(request)
    record = runner.create(body.input_file_id, body.endpoint, body.completion_window, body.metadata)
    return _batch(runner, record)


@router.get("/v1/batches/{batch_id}")
async def retrieve_batch(batch_id: str, request: Request) -> Batch:
    runner = _runner(request)
    return _batch(runner, runner.store.batch(batch_id))


@router.get("/v1/batches")
async def list_batches(
    request: Request,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> BatchList:
    runner = _runner(request)
    found, more = runner.store.batches(after=after, limit=limit)
    data = [_batch(runner, record) for record in found]
    return BatchList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=more,
    )


@router.post("/v1/batches/{batch_id}/cancel")
async def cancel_batch(batch_id: str, request: Request) -> Batch:
    runner = _runner(request)
    return _batch(runner, runner.cancel(batch_id))
