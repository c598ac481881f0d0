"""The search process: the command's side, with the searching user's session only.

It reads settings and warm answers (the KV store cache, read-only) and asks the privileged service
(``defender_ipstats.service``) for everything else; it never holds a credential or an access token.
"""
