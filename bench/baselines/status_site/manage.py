#!/usr/bin/env python
"""The baseline site's manage.py (migrate only)."""
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "status_site.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
