"""A stand-in for the bit of Splunk's own Python library (``splunk``) that the app's REST handler uses.

Only ``splunk.persistconn``: the persistent REST handler protocol. Written for the tests from the
protocol's description (restmap.conf.spec, scripttype = persist); it is not Splunk's code.
"""
