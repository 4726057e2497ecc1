"""/v1/users/me/webhook: the caller's completion webhook and its delivery log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, status

from api.deps import CurrentUser, SessionDep, SettingsDep
from api.pagination import DEFAULT_LIMIT, CursorQuery, LimitQuery, Page
from api.problems import problem_responses
from api.webhooks import service
from api.webhooks.delivery import Network
from api.webhooks.schemas import DeliveryView, WebhookUpdate, WebhookView
from api.webhooks.secrets import SecretBox

router = APIRouter(prefix="/v1/users/me/webhook", tags=["webhooks"])


async def get_box(request: Request) -> SecretBox:
    box: SecretBox = request.app.state.secret_box
    return box


async def get_network(request: Request) -> Network:
    network: Network = request.app.state.webhook_network
    return network


BoxDep = Annotated[SecretBox, Depends(get_box)]
NetworkDep = Annotated[Network, Depends(get_network)]


@router.put("", responses=problem_responses(400, 401, 404, 413, 422, 503))
async def put_webhook(
    update: WebhookUpdate,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    box: BoxDep,
    network: NetworkDep,
) -> WebhookView:
    """Set the completion webhook (`{"url": ...}`), or rotate its secret (`{"rotate": true}`).

    Each generation that ends, and each pack, is posted to the URL as a thin signed JSON event
    (Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`). The secret is
    in the answer only when the webhook is created or rotated: keep it then.
    """
    return await service.put_webhook(
        session, user.id, update, settings=settings, box=box, network=network
    )


@router.get("", responses=problem_responses(401, 404, 503))
async def get_webhook(user: CurrentUser, session: SessionDep) -> WebhookView:
    """The caller's webhook (never its secret)."""
    return await service.get_webhook(session, user.id)


@router.delete(
    "", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(401, 404, 503)
)
async def delete_webhook(user: CurrentUser, session: SessionDep) -> None:
    """Remove the webhook; deliveries still pending fail."""
    await service.delete_webhook(session, user.id)


@router.get("/deliveries", responses=problem_responses(401, 422, 503))
async def list_deliveries(
    user: CurrentUser,
    session: SessionDep,
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> Page[DeliveryView]:
    """The delivery log, newest first: each event, its status and every attempt's answer."""
    items, next_cursor = await service.list_deliveries(session, user.id, cursor=cursor, limit=limit)
    return Page(items=list(items), next_cursor=next_cursor)
