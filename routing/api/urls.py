from django.urls import path

from . import views

urlpatterns = [
    path("routing/simulate/", views.Simulate.as_view(), name="routing-simulate"),
    path("routing/replay/", views.Replay.as_view(), name="routing-replay"),
]
