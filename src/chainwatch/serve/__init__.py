"""``chainwatch serve``: the team's web page and JSON API over the shared database.

One module per job: ``app`` builds the Starlette application, ``auth`` decides who may ask
(bearer token for the API, a login cookie and CSRF token for the pages), ``queries`` is the
read model both the API and the pages draw on, ``api`` and ``pages`` are the two faces, and
``scans`` runs submitted scans in a bounded worker pool.
"""
