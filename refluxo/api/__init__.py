"""The HTTP and Pub/Sub layer: routes, authentication, the OpenAPI document, events.

It calls the runtime (:mod:`refluxo.runtime`) and maps its domain errors to HTTP statuses;
nothing below it imports it. Flask/werkzeug are imported only here and by the hosts.
"""
