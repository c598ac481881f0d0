"""The privileged side: the app's persistent REST handler inside splunkd (system session).

Everything that needs a credential happens here and nowhere else: reading secrets, getting access
tokens, spending the shared API budget, calling Defender and Graph, writing the cache. Searches and
the setup page reach it over splunkd's REST API; nothing it answers carries a token or a secret.
"""
