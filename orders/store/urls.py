from django.urls import path

from . import views

app_name = "store"

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.StoreLogin.as_view(), name="login"),
    path("logout/", views.StoreLogout.as_view(), name="logout"),
    path("<slug:code>/", views.queue, name="queue"),
    path("<slug:code>/f/<int:pk>/", views.fulfillment_detail, name="fulfillment"),
    path("<slug:code>/f/<int:pk>/pick-list/", views.pick_list, name="pick-list"),
    path(
        "<slug:code>/f/<int:pk>/<slug:action>/",
        views.fulfillment_action,
        name="action",
    ),
]
