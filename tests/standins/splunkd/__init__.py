"""A plain-HTTP stand-in for splunkd's REST API, for tests.

Stdlib only.  ``SplunkdStandin`` runs an ``http.server.ThreadingHTTPServer`` on
127.0.0.1 (port chosen by the OS) in a background thread and answers the
endpoints the app uses the way splunkd does: Atom XML by default, JSON with
``output_mode=json``, splunkd's status codes and error bodies, so splunklib's
own client code works against it unmodified.

Model
-----
* Configuration is layered like splunkd's: each app has a *default* layer
  (parsed from ``<app folder>/default/*.conf`` at start) and a *local* layer
  (REST writes), users have private layers per app
  (``etc/users/<user>/<app>/local``).  Reads resolve in the namespace of the
  URL: ``/servicesNS/<owner>/<app>/`` (``-`` wildcards allowed) or
  ``/services/`` (= the caller and the caller's default app).  Precedence in a
  concrete context: the user's layer, the app (local then default), the other
  apps (only what their metadata exports with ``export = system``), then
  ``system``.  Stanza values are merged across layers and the ``[default]``
  stanza fills keys a stanza lacks.  Wildcard reads list every instance
  separately (an entity name may then be ambiguous, as with splunkd).
* ``metadata/default.meta`` of each app is read for ``access`` and
  ``export``; REST writes do not create metadata (perms come from the
  hierarchy ``[conf/stanza]``, ``[conf]``, ``[]``).  When an app defines no
  access, objects are readable by everyone and writable by ``admin``.
* ``storage/passwords`` lives in the ``passwords`` conf file
  (``[credential:<realm>:<user>:]``), ``storage/collections/config`` in
  ``collections``; KV store data is kept per (app, collection) in memory.
* Users, roles and capabilities are small but real: ``admin`` has
  ``admin_all_objects``; ``user`` has neither ``list_storage_passwords`` nor
  ``admin_all_objects``.

Endpoints (under ``/services/`` and ``/servicesNS/<owner>/<app>/``): ``auth/login``,
``server/info``, ``server/settings``, ``server/control/restart`` (only clears the
``restart_required`` message), ``authentication/current-context``,
``authorization/capabilities``, ``messages``, ``apps/local`` (read only), ``kvstore/status``,
``configs/conf-<file>``, ``properties``, ``storage/passwords``, ``storage/collections/config``,
``storage/collections/data/<collection>`` (incl. ``batch_save`` and ``batch_find``),
``shcluster/member/info`` and ``shcluster/member/members`` (members of a ``SearchHeadCluster``; 503 elsewhere),
``saved/searches`` (list, ``<name>``, POST ``<name>/dispatch``: only to callers with read access,
as the ACL in the app's metadata says; see savedsearches.py),
``search/jobs`` and ``search/v2/jobs`` (jobs the tests create with ``create_job``; ``<sid>``, ``<sid>/control`` with
``action=cancel|finalize|pause|unpause|touch``, ``DELETE <sid>``: cancel).  Anything else is a 404
with splunkd's error body.

Roles come from ``DEFAULT_ROLES`` and from every app's ``authorize.conf`` (``[role_<name>]`` with
``<capability> = enabled`` and ``importRoles``, ``[capability::<name>]``); a user's capabilities and
the roles that object ACLs check include the imported roles.

Custom REST endpoints: an app's ``restmap.conf`` ``[script:<name>]`` stanzas with ``scripttype =
persist`` are served as splunkd serves them. A request whose path (after ``/services`` or
``/servicesNS/<owner>/<app>``) starts with the stanza's ``match`` is checked against ``capability`` /
``capability.<method>`` (``and``/``or``/parentheses; 403 with splunkd's text), then handed to a
persistent handler process, started on first use and kept (see handler_processes below):
``python persistconn_driver.py`` (``standins/splunk_python``, a stand-in of Splunk's
``splunk.persistconn``), which loads ``<app>/bin/<script>`` and speaks splunkd's packet protocol on its
stdin/stdout. The request is the JSON splunkd sends (``method``, ``rest_path``, ``path_info``,
``query``, ``form``, ``payload`` with ``passPayload``, ``session`` with ``passSession``, ``ns``,
``server``, ``connection``, ``restmap``, and ``system_authtoken`` - a session of
``splunk-system-user``, role ``splunk-system-role`` - with ``passSystemAuth``); the reply's
``status``, ``headers`` and ``payload`` become the HTTP answer. ``python`` and ``splunk_home`` of the
stand-in choose the interpreter and ``SPLUNK_HOME`` of the handler process.

Jobs: only their state is modelled (no search runs). A cancelled job is gone (``404 Unknown
sid.``, as splunkd answers once it deleted the job); a finalised one reports ``isFinalized``
and ``dispatchState`` FINALIZING.  A job is visible to its owner and to ``admin_all_objects``.

Known deviations: only ``default/`` of an app folder is read (never ``local/``); REST writes
do not record an owner in local.meta; error texts that were not confirmed from splunkd are
plausible wordings (KV store 404/409/400 texts in particular); KV ``_user`` is always
``nobody``; the KV store accepts the documented operators plus ``$in $nin $exists $eq`` and
rejects others with 400; ``batch_find`` accepts ``fields`` as a list or a comma string. Persistent
REST handlers: up to ``handler_processes`` processes per driver, one request at a time each (how many
splunkd runs is not documented; ``recycle_handlers`` ends each after one request); only ``[script:*]``
stanzas with ``scripttype = persist`` of an app's default layer are served; ``requireAuthentication =
false`` and ``acceptFrom`` are not modelled.

Nothing is written to disk.

Layout: ``standin`` (SplunkdStandin: set-up, lifecycle, sessions, test-side state, dispatching) with
one mixin per surface: ``system`` (server, auth, messages, apps), ``jobs``, ``savedsearches``, ``configs``
(configs/conf-* and properties), ``passwords``, ``kvstore`` (collections config and data), ``scripts``
(custom REST endpoints); beneath them ``layers`` (conf resolution, ACLs), ``rendering`` (XML/JSON),
``kvquery`` (the KV store query engine), ``credentials`` (password entity names), ``roles``, ``conf``
(.conf parsing), ``model`` (records, requests), ``driver`` (the persistent handler process) and
``server`` (the HTTP handler).
"""

from .conf import parse_conf_file, parse_conf_text
from .model import DEFAULT_APP, RequestRecord
from .shcluster import SearchHeadCluster
from .standin import SplunkdStandin

__all__ = [
    "DEFAULT_APP",
    "RequestRecord",
    "SearchHeadCluster",
    "SplunkdStandin",
    "parse_conf_file",
    "parse_conf_text",
]
