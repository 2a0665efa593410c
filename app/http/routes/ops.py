"""Operations: ``GET /v1/models`` (OpenAI list shape plus task details), health probes, Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from model_zoo.card import ModelCard

from ...engine import Engine
from ...errors import NotFound, echo
from ...settings import Settings
from ..dependencies import get_engine, get_settings, require_api_key, require_ops_key, served_name
from ..schemas import ErrorOut, HealthOut, ModelList, ModelOut, ReadyOut

models_router = APIRouter(prefix="/v1/models", tags=["models"], dependencies=[Depends(require_api_key)],
                          responses={401: {"model": ErrorOut}})
health_router = APIRouter(tags=["operations"], dependencies=[Depends(require_ops_key)],
                          responses={401: {"model": ErrorOut}})


def _model_out(name: str, card: ModelCard, created: int) -> ModelOut:
    rate, latency = card.sample_rate, card.algorithmic_latency_samples
    return ModelOut(id=name, created=created, task=card.task, sample_rate=rate, streaming=True,
                    algorithmic_latency_samples=latency, algorithmic_latency_ms=round(1000 * latency / rate, 3),
                    parameters=card.parameters, labels=None if card.labels is None else list(card.labels))


@models_router.get("", response_model=ModelList, response_model_exclude_none=True)
async def list_models(request: Request, engine: Engine = Depends(get_engine)) -> ModelList:
    created = request.app.state.started
    return ModelList(data=[_model_out(name, card, created) for name, card in engine.cards.items()])


@models_router.get("/{model_id}", response_model=ModelOut, response_model_exclude_none=True,
                   responses={404: {"model": ErrorOut}})
async def get_model(model_id: str, request: Request, engine: Engine = Depends(get_engine),
                    settings: Settings = Depends(get_settings)) -> ModelOut:
    """A served model, or an alias clients send (``whisper-1``) under its own id, as POST accepts it."""
    name = served_name(engine, settings, model_id)
    if name is None:
        raise NotFound(f"model {echo(model_id)} is not served", code="model_not_found", param="model_id")
    return _model_out(model_id, engine.cards[name], request.app.state.started)


@health_router.get("/health/live", response_model=HealthOut)
async def live() -> HealthOut:
    """The process answers (it may still be loading models)."""
    return HealthOut(status="ok")


@health_router.get("/health/ready", response_model=ReadyOut, responses={503: {"model": ReadyOut}})
@health_router.get("/health", response_model=ReadyOut, include_in_schema=False)
async def ready(request: Request):
    """200 once a worker has loaded and warmed up every model; 503 (with Retry-After) before and while closing."""
    pool, codecs = request.app.state.pool, request.app.state.codecs
    if pool is not None and pool.ready and codecs is not None and codecs.done():
        return ReadyOut(status="ready", workers=pool.workers())
    status = "shutting_down" if pool is not None and pool.closing else "loading"
    body = ReadyOut(status=status, workers=pool.workers() if pool is not None else [])
    return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "1"})


@health_router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(request: Request) -> Response:
    """Prometheus text format."""
    return Response(request.app.state.metrics.render(request.app.state.pool), media_type=CONTENT_TYPE_LATEST)
