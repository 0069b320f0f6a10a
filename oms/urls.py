from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from oms.views import healthz

api_v1 = [
    path("", include("inventory.api.urls")),
    path("", include("orders.api.urls")),
    path("", include("routing.api.urls")),
    path("", include("returns.api.urls")),
    path("", include("oms.api.urls")),
]

urlpatterns = [
    path("", RedirectView.as_view(url="/api/docs/", permanent=False)),
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("console/", include("oms.console.urls")),
    path("store/", include("orders.store.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/v1/", include(api_v1)),
]

handler404 = "oms.api.errors.json_404"
handler500 = "oms.api.errors.json_500"
