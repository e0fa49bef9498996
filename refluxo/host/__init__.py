"""Hosting: one settings object, the composition root that picks backends, and the
processes that run them (the ``refluxo`` command, the local server, the demo).

Only this layer (and ``main.py``) reads the environment and chooses backends.
"""
