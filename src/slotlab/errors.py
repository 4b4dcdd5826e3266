"""Every error text slotlab sends: the server's, the vendors', and slotlab's own, in one place.

fakeredis keeps its texts in ``fakeredis._msgs``; this module is the same idea for slotlab. A
text here is the FULL error reply as it goes on the wire after the ``-``, code first
(``ERR ...``, ``CROSSSLOT ...``, ``MOVED ...``), with ``str.format`` fields for the variable
parts. Code that answers an error takes its text from here, so one change here changes every
place that says it, and a grep for a server text finds exactly one line under ``src/``.

Three sections, never mixed:

- **server**: what Redis 7.0 itself answers, copied from its source (``server.c``,
  ``networking.c``, ``cluster.c``, ``eval.c``, ``multi.c``...) and checked against a real
  server by the fidelity tests;
- **vendor personalities**: what a cloud proxy answers, quoted from the vendor's published pages
  or from user reports of its wire text (FACTS.md section 3 gives the sources);
- **slotlab**: texts slotlab makes up for situations no server or vendor text covers. Each
  starts ``ERR slotlab`` so it cannot be mistaken for a server's or a vendor's.
"""

from __future__ import annotations

from typing import Final

# =============================================================================================
# server: Redis 7.0
# =============================================================================================

# ---- processCommand (server.c): lookup and arity --------------------------------------------
#: ``args`` is each argument quoted and followed by a space, at most 128 bytes in all.
UNKNOWN_COMMAND: Final = "ERR unknown command '{name}', with args beginning with: {args}"
UNKNOWN_SUBCOMMAND: Final = "ERR unknown subcommand '{sub}'. Try {container} HELP."
WRONG_ARITY: Final = "ERR wrong number of arguments for '{name}' command"
PROTECTED_COMMAND: Final = (
    "ERR {which} command not allowed. If the {option} option is set to \"local\", you can run it "
    "from a local connection, otherwise you need to set this option in the configuration file, "
    "and then restart the server."
)
NOT_IN_MULTI: Final = "ERR Command not allowed inside a transaction"
PUBSUB_CONTEXT: Final = (
    "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET "
    "are allowed in this context"
)
READONLY_REPLICA: Final = "READONLY You can't write against a read only replica."

# ---- the request parser (networking.c) ------------------------------------------------------
#: The server sends ``-ERR Protocol error: ...`` and closes the connection.
PROTOCOL_ERROR: Final = "ERR {reason}"
PROTO_BIG_BULK_COUNT: Final = "Protocol error: too big bulk count string"
PROTO_BIG_MBULK_COUNT: Final = "Protocol error: too big mbulk count string"
PROTO_BIG_INLINE: Final = "Protocol error: too big inline request"
PROTO_EXPECTED_DOLLAR: Final = "Protocol error: expected '$', got '{got}'"
PROTO_BULK_LENGTH: Final = "Protocol error: invalid bulk length"
PROTO_MBULK_LENGTH: Final = "Protocol error: invalid multibulk length"
PROTO_UNBALANCED_QUOTES: Final = "Protocol error: unbalanced quotes in request"

# ---- connection: HELLO, CLIENT SETNAME, SELECT ----------------------------------------------
HELLO_PROTO_NOT_INT: Final = "ERR Protocol version is not an integer or out of range"
NOPROTO: Final = "NOPROTO unsupported protocol version"
WRONGPASS: Final = "WRONGPASS invalid username-password pair or user is disabled."
HELLO_SYNTAX: Final = "ERR Syntax error in HELLO option '{option}'"
CLIENT_NAME: Final = "ERR Client names cannot contain spaces, newlines or special characters."
SELECT_IN_CLUSTER: Final = "ERR SELECT is not allowed in cluster mode"
SWAPDB_IN_CLUSTER: Final = "ERR SWAPDB is not allowed in cluster mode"
MOVE_IN_CLUSTER: Final = "ERR MOVE is not allowed in cluster mode"
#: sort.c (7.0): a BY pattern (with '*') or any GET option, refused in cluster mode.
SORT_BY_IN_CLUSTER: Final = "ERR BY option of SORT denied in Cluster mode."
SORT_GET_IN_CLUSTER: Final = "ERR GET option of SORT denied in Cluster mode."
COPY_IN_CLUSTER: Final = "ERR Copying to another database is not allowed in cluster mode"
DB_RANGE: Final = "ERR DB index is out of range"

# ---- authentication (server.c processCommand, acl.c authCommand, networking.c helloCommand) --
NOAUTH: Final = "NOAUTH Authentication required."
HELLO_NOAUTH: Final = (
    "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO "
    "AUTH <user> <pass> option can be used to authenticate the client and select the RESP "
    "protocol version at the same time"
)
AUTH_NO_PASSWORD: Final = (
    "ERR AUTH <password> called without any password configured for the default user. Are you "
    "sure your configuration is correct?"
)
#: Not a reply: what the server LOGS (``securityWarningCommand``) before it drops a connection
#: whose first word is ``POST`` or ``Host:`` (an HTTP request, a cross-protocol attack).
SECURITY_ATTACK_LOG: Final = (
    "Possible SECURITY ATTACK detected. It looks like somebody is sending POST or Host: commands "
    "to Redis. This is likely due to an attacker attempting to use Cross Protocol Scripting to "
    "compromise your Redis instance. Connection aborted."
)

# ---- CONFIG SET (config.c configSetCommand) -------------------------------------------------
CONFIG_SET_REFUSED: Final = "ERR CONFIG SET failed (possibly related to argument '{name}') - {why}"
CONFIG_IMMUTABLE: Final = "can't set immutable config"
CONFIG_PROTECTED: Final = "can't set protected config"

# ---- values ---------------------------------------------------------------------------------
NOT_INTEGER: Final = "ERR value is not an integer or out of range"
NOT_FLOAT: Final = "ERR value is not a valid float"
NAN_OR_INF: Final = "ERR increment would produce NaN or Infinity"
SYNTAX: Final = "ERR syntax error"
INVALID_CURSOR: Final = "ERR invalid cursor"
NUMKEYS_ZERO: Final = "ERR numkeys should be greater than 0"
AT_LEAST_ONE_KEY: Final = "ERR at least 1 input key is needed for '{name}' command"
INVALID_EXPIRE: Final = "ERR invalid expire time in '{name}' command"
BITFIELD_RO: Final = "ERR BITFIELD_RO only supports the GET subcommand"
WAIT_ON_REPLICA: Final = (
    "ERR WAIT cannot be used with replica instances. Please also note that since Redis 4.0 if a "
    "replica is configured to be writable (which is not the default) writes to replicas are just "
    "local and are not propagated."
)

# ---- cluster: routing (cluster.c getNodeByQuery) --------------------------------------------
CROSSSLOT: Final = "CROSSSLOT Keys in request don't hash to the same slot"
MOVED: Final = "MOVED {slot} {addr}"
ASK: Final = "ASK {slot} {addr}"
TRYAGAIN: Final = "TRYAGAIN Multiple keys request during rehashing of slot"
CLUSTERDOWN_UNBOUND: Final = "CLUSTERDOWN Hash slot not served"
CLUSTERDOWN: Final = "CLUSTERDOWN The cluster is down"

# ---- cluster: CLUSTER subcommands -----------------------------------------------------------
INVALID_SLOT: Final = "ERR Invalid slot"
INVALID_SLOT_OR_KEYS: Final = "ERR Invalid slot or number of keys"
NOT_A_MASTER: Final = "ERR The specified node is not a master"
SETSLOT_ON_REPLICA: Final = "ERR Please use SETSLOT only with masters."
SLOT_OUT_OF_RANGE: Final = "ERR Invalid or out of range slot"
NOT_SLOT_OWNER: Final = "ERR I'm not the owner of hash slot {slot}"
ALREADY_SLOT_OWNER: Final = "ERR I'm already the owner of hash slot {slot}"
UNKNOWN_NODE: Final = "ERR I don't know about node {node}"
NO_SUCH_NODE: Final = "ERR Unknown node {node}"
TARGET_NOT_MASTER: Final = "ERR Target node is not a master"
SLOT_STILL_HAS_KEYS: Final = (
    "ERR Can't assign hashslot {slot} to a different node while I still hold keys for this hash "
    "slot."
)
SETSLOT_SYNTAX: Final = (
    "ERR Invalid CLUSTER SETSLOT action or number of arguments. Try CLUSTER HELP"
)
SLOT_RANGE_ORDER: Final = "ERR start slot number {lo} is greater than end slot number {hi}"
SLOT_UNASSIGNED: Final = "ERR Slot {slot} is already unassigned"
SLOT_BUSY: Final = "ERR Slot {slot} is already busy"
SLOT_TWICE: Final = "ERR Slot {slot} specified multiple times"
FLUSHSLOTS_NOT_EMPTY: Final = "ERR DB must be empty to perform CLUSTER FLUSHSLOTS."

# ---- COMMAND GETKEYS ------------------------------------------------------------------------
GETKEYS_INVALID_COMMAND: Final = "ERR Invalid command specified"
GETKEYS_NO_KEYS: Final = "ERR The command has no key arguments"
GETKEYS_ARITY: Final = "ERR Invalid number of arguments specified for command"
GETKEYS_INVALID_ARGS: Final = "ERR Invalid arguments specified for command"

# ---- MIGRATE --------------------------------------------------------------------------------
MIGRATE_KEYS_EMPTY_KEY: Final = (
    "ERR When using MIGRATE KEYS option, the key argument must be set to the empty string"
)
MIGRATE_IOERR: Final = "IOERR error or timeout connecting to the client"
MIGRATE_TARGET_ERROR: Final = "ERR Target instance replied with error: {error}"

# ---- transactions (multi.c) -----------------------------------------------------------------
MULTI_NESTED: Final = "ERR MULTI calls can not be nested"
DISCARD_WITHOUT_MULTI: Final = "ERR DISCARD without MULTI"
EXEC_WITHOUT_MULTI: Final = "ERR EXEC without MULTI"
WATCH_IN_MULTI: Final = "ERR WATCH inside MULTI is not allowed"
EXECABORT: Final = "EXECABORT Transaction discarded because of previous errors."
#: ``rejectCommand`` on EXEC itself: the reason is the rejection's text without its ``-``.
EXECABORT_BECAUSE: Final = "EXECABORT Transaction discarded because of: {reason}"

# ---- scripting (eval.c, script_lua.c, function_lua.c) ---------------------------------------
NOSCRIPT: Final = "NOSCRIPT No matching script. Please use EVAL."
NOTBUSY: Final = "NOTBUSY No scripts in execution right now."
NUMKEYS_TOO_MANY: Final = "ERR Number of keys can't be greater than number of args"
NUMKEYS_NEGATIVE: Final = "ERR Number of keys can't be negative"
SCRIPT_COMPILE: Final = "ERR Error compiling script (new function): {detail}"
SCRIPT_NO_CLUSTER: Final = "ERR Can not run script on cluster, 'no-cluster' flag is set."
SCRIPT_WRITE_ON_REPLICA: Final = "READONLY Can not run script with write flag on readonly replica"
SCRIPT_WRITE_RO: Final = "ERR Can not execute a script with write flag using *_ro command."
SCRIPT_FLUSH_OPTION: Final = "ERR SCRIPT FLUSH only support SYNC|ASYNC option"
SHEBANG_INVALID: Final = "ERR Invalid script shebang"
SHEBANG_ENGINE_INVALID: Final = "ERR Invalid engine in script shebang"
SHEBANG_ENGINE_UNEXPECTED: Final = "ERR Unexpected engine in script shebang: {engine}"
SHEBANG_OPTION: Final = "ERR Unknown lua shebang option: {option}"
SHEBANG_FLAG: Final = "ERR Unexpected flag in script shebang: {flag}"
LUA_GLOBAL: Final = (
    "ERR user_script:{line}: Script attempted to access nonexistent global variable '{name}'"
)
LUA_READONLY_TABLE: Final = "ERR user_script:{line}: Attempt to modify a readonly table"
LUA_NO_ARGS: Final = "ERR Please specify at least one argument for this redis lib call"
LUA_ARG_TYPE: Final = "ERR Lua redis lib command arguments must be strings or integers"
LUA_UNKNOWN_COMMAND: Final = "ERR Unknown Redis command called from script"
LUA_ARITY: Final = "ERR Wrong number of args calling Redis command from script"
LUA_NOSCRIPT_COMMAND: Final = "ERR This Redis command is not allowed from script"
LUA_WRITE_RO: Final = "ERR Write commands are not allowed from read-only scripts."
LUA_NON_LOCAL_KEY: Final = "ERR Script attempted to access a non local key in a cluster node"
LUA_CROSS_SLOT: Final = "ERR Script attempted to access keys that do not hash to the same slot"
LUA_BLOCK_OPTION: Final = "ERR {name} command is not allowed with BLOCK option from scripts"
LUA_EXECUTION_FAILURE: Final = "ERR execution failure"

# =============================================================================================
# vendor personalities: quoted from the vendor's pages and user reports (FACTS.md section 3)
# =============================================================================================

# ---- Alibaba Cloud (ApsaraDB for Redis / Tair), cluster instance in proxy mode ---------------
#: The wire text users report (OpenIM issue #2333); the docs print "must be in same slot".
ALIBABA_CROSS_SLOT: Final = "ERR '{cmd}' command keys must in same slot"
#: The Lua limits page.
ALIBABA_NO_KEYS: Final = (
    "ERR for redis cluster, eval/evalsha number of keys can't be negative or zero"
)
#: The Lua limits page, newer wording (OpenIM issue #2894 quotes it whole).
ALIBABA_BAD_SCRIPT: Final = (
    "ERR bad lua script for redis cluster, all the keys that the script uses should be passed "
    "using the KEYS array, and KEYS should not be in expression"
)

# =============================================================================================
# slotlab: texts of our own (no server or vendor text covers these situations)
# =============================================================================================

# ---- the proxy ------------------------------------------------------------------------------
PROXY_UNREACHABLE: Final = "ERR slotlab proxy: node {addr} is unreachable ({why})"
PROXY_UNSUPPORTED: Final = "ERR slotlab proxy: '{cmd}' is not supported in proxy mode"
PROXY_DB_RANGE: Final = (
    "ERR slotlab proxy: DB index is out of range (the cluster behind this proxy has only DB 0)"
)
PROXY_WATCH_SLOT: Final = (
    "ERR slotlab proxy: a WATCHed transaction must keep all its keys in the WATCHed slot"
)
PROXY_INTERNAL: Final = "ERR slotlab proxy: internal error ({kind}: {detail})"
#: Logged (not sent) when a client that never reads is paused: its replies fill the bound.
PROXY_CLIENT_PAUSED: Final = (
    "slotlab proxy: client {client} has {size} bytes of replies it has not read (the bound is "
    "{limit}); it is paused (no more of its commands are read) until it reads"
)

# ---- the emulated cluster -------------------------------------------------------------------
EMULATOR_INTERNAL: Final = "ERR slotlab emulator internal error: {detail}"
EMULATOR_BLOCKED_LIMIT: Final = (
    "ERR slotlab's emulated cluster serves at most {limit} blocked clients at once (each waits "
    "in a thread of its own); wake or close some first, or use the real backend"
)
EMULATOR_SCRIPT_TIMEOUT: Final = (
    "ERR slotlab's emulated cluster stopped a script that ran longer than {limit:g} s (a real "
    "server would answer BUSY to other clients until SCRIPT KILL)"
)
EMULATOR_NOT_IMPLEMENTED: Final = (
    "ERR the emulated cluster (fakeredis {version}) does not implement '{cmd}'; use the real "
    "backend for it"
)
EMULATOR_FIXED_TOPOLOGY: Final = (
    "ERR the emulated cluster does not support CLUSTER {sub}: its nodes and roles are fixed when "
    "the lab starts (use the real backend for this)"
)
