"""sentry-memwatch: a supervisord event listener that keeps processes inside a memory budget."""

__version__ = "0.1.0"
