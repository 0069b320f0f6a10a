from django.apps import AppConfig


class OmsConfig(AppConfig):
    name = "oms"
    verbose_name = "OMS core"

    def ready(self) -> None:
        from . import logging as oms_logging
        from . import schema  # noqa: F401  registers the OpenAPI auth extension

        oms_logging.connect_task_logging()
