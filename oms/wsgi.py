import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

from oms.process import settle_collector

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oms.settings")
application = get_wsgi_application()
get_resolver().url_patterns  # noqa: B018 - import every view now, not on the first request
settle_collector()
