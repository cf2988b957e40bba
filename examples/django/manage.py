#!/usr/bin/env python3
"""The Django example's manage.py (migrate, test, dumpdata, and the `demo` command)."""
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "qftdemo.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
