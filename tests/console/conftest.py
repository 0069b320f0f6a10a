import pytest
from django.contrib.auth.models import User
from django.test import Client

from oms.roles import CSR, MERCHANT, SUPERVISOR, ensure_groups


@pytest.fixture
def users(db):
    """One user per role, password = username; "nobody" has no role."""
    groups = ensure_groups()
    made = {}
    for name, group in (("csr", CSR), ("supervisor", SUPERVISOR), ("merchant", MERCHANT), ("nobody", None)):
        user = User.objects.create_user(name, f"{name}@example.com", name, is_staff=True)
        if group:
            user.groups.add(groups[group])
        made[name] = user
    return made


@pytest.fixture
def login(users):
    def as_(name: str) -> Client:
        client = Client()
        client.force_login(users[name])
        return client

    return as_


@pytest.fixture
def csr(login):
    return login("csr")
