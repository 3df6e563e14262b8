"""WSGI entry point of the baseline site."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "status_site.settings")
application = get_wsgi_application()
