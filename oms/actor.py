"""Who or what caused a change: a user, an API key or a task. Every audit row records one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import models


class ActorType(models.TextChoices):
    USER = "user", "User"
    API_KEY = "api_key", "API key"
    TASK = "task", "Task"
    SYSTEM = "system", "System"


@dataclass(frozen=True)
class Actor:
    type: str
    label: str
    user_id: int | None = None
    api_key_id: int | None = None

    @classmethod
    def for_user(cls, user: Any) -> Actor:
        return cls(ActorType.USER, user.get_username(), user_id=user.pk)

    @classmethod
    def for_api_key(cls, key: Any) -> Actor:
        return cls(ActorType.API_KEY, f"{key.name} ({key.prefix})", api_key_id=key.pk)

    @classmethod
    def for_task(cls, name: str) -> Actor:
        return cls(ActorType.TASK, name)

    @classmethod
    def system(cls, label: str = "system") -> Actor:
        return cls(ActorType.SYSTEM, label)

    @classmethod
    def from_request(cls, request: Any) -> Actor:
        key = getattr(request, "api_key", None)
        if key is not None:
            return cls.for_api_key(key)
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            return cls.for_user(user)
        return cls.system("anonymous")

    def as_fields(self) -> dict[str, Any]:
        return {
            "actor_type": self.type,
            "actor_label": self.label[:200],
            "actor_user_id": self.user_id,
            "actor_api_key_id": self.api_key_id,
        }


class ActorFields(models.Model):
    """Abstract columns for audit rows (ledger, timelines)."""

    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    actor_label = models.CharField(max_length=200)
    # Audit rows are written far more often than they are searched by actor: no index on these.
    actor_user = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    actor_api_key = models.ForeignKey(
        "oms.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )

    class Meta:
        abstract = True

    @property
    def actor_display(self) -> str:
        return f"{self.get_actor_type_display()}: {self.actor_label}"
