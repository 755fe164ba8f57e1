"""The web app as a SMART App Launch 2.2 app: EHR and standalone launch, the chart, write-back.

- :mod:`.config`: the ``[smart]`` settings (``[[smart.ehrs]]``: ``iss``, ``client_id``,
  ``private_key_file``, ``scopes``).
- :mod:`.sessions`: the server-side session store (an opaque id in the cookie, the rest here).
- :mod:`.oauth`: discovery, the authorization request (PKCE S256, ``state``), the token
  exchange and refresh, with Authlib; ``private_key_jwt`` client authentication.
- :mod:`.chart`: the patient's chart read with the access token, and its assessment.
- :mod:`.routes`: ``/smart/launch``, ``/smart/start``, ``/smart/callback``, ``/smart/app``,
  ``/smart/save``, ``/smart/jwks.json``.

This package is imported only by the service (it needs the ``service`` extra); importing it
does not import the routes.

.. versionadded:: 0.2.0
"""
