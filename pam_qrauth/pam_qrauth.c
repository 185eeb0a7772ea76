/*
 * pam_qrauth: approve a login by scanning a QR code with the qrauth phone app.
 *
 * The module is a thin client of the local agent (docs/protocol.md section 1): it sends
 * BEGIN, shows the CHALLENGE the agent rendered, then sends WAIT (the user pressed Enter,
 * or info mode), CODE (the user typed the offline code) or RENDER (the user typed a or t
 * for another drawing of the same QR, answered by a CHALLENGE) and maps the VERDICT to a
 * PAM code. No crypto, JSON or network here. Only a VERDICT APPROVED that answers a WAIT,
 * CODE or RENDER (a session approved before the user asked) returns PAM_SUCCESS;
 * everything else fails closed.
 */
#include <errno.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include <security/pam_appl.h>
#include <security/pam_ext.h>
#include <security/pam_modules.h>

#include "agent.h"
#include "cfg.h"
#include "frame.h"

#define PUBLIC __attribute__((visibility("default")))

#define QR_MAX_ROUNDS 10		/* prompts + requests per login, a backstop */
#ifndef QR_PW_BUF_START
#define QR_PW_BUF_START 1024		/* getpwnam_r buffer; doubled on ERANGE (the fuzz build starts small) */
#endif
#define QR_PW_BUF_MAX 65536
#define QR_IO_TIMEOUT_MS 10000		/* connect, BEGIN and CODE replies: the agent answers at once */
#ifndef QR_GRACE_MS
#define QR_GRACE_MS 2000		/* past our deadline, so the agent's own EXPIRED arrives first */
#endif

#define MSG_UNREACHABLE "qrauth: the login approval service is not running on this host; ask the administrator."
#define MSG_NOT_ANSWERING "qrauth: the login approval service is not answering; try again, or ask the administrator."
#define MSG_LOST "qrauth: lost contact with the login approval service; try again."
#define MSG_BAD_REPLY "qrauth: the login approval service sent an invalid reply; ask the administrator."
#define MSG_WRONG_AGENT "qrauth: the login approval service failed a security check; ask the administrator."
#define MSG_DENIED "Login denied on the phone."
#define MSG_EXPIRED "The QR code expired. Try again."
#define MSG_LOCKED "Too many wrong codes."
#define MSG_NOT_DIGITS "That is not a code: type the digits shown in the qrauth app, a (ASCII QR), " \
	"t (text) or just Enter."
#define PROMPT_SHORT "Type the code, or press Enter to wait for approval: "
#define PROMPT_OFFLINE "Your phone cannot reach this host right now. Type the 8-digit code shown in the qrauth app: "
#define PROMPT_INFO_OFFLINE "Type the app's code, a (ASCII QR) or t (text); Enter keeps waiting: "

struct login {
	pam_handle_t *pamh;
	const struct qr_cfg *cfg;
	/* user: the account's own name (pw_name) once getpwnam_r found it, else PAM_USER as given. */
	const char *user, *rhost, *service, *tty;
	/* PAM_RUSER: the caller su and sudo name; the agent limits the logins waiting for each. */
	const char *ruser;
	/* From getpwnam_r when the user exists: sent in BEGIN (user and home point into pwbuf). */
	int have_pw;
	uid_t uid;
	const char *home;
	char *pwbuf;
	/* Sanitised copies: user and rhost come from the network. user_s for messages; *_l as
	 * values of log lines (log_value: quoted unless plain). */
	char user_s[96], user_l[96], rhost_l[96], service_l[72];
	int64_t deadline_ms;		/* the whole login, CLOCK_MONOTONIC */
	struct qr_agent *agent;
	/* The first BEGIN may meet an agent that is stopping (systemctl restart): it accepted the
	 * connection from the socket's backlog and closed it without a byte of reply. Then BEGIN is
	 * sent once more on a new connection, which the next agent takes from the backlog. Nothing
	 * was shown and no session exists (a session lives as long as its connection). */
	int begin_retry;
};

/* One log line per decision, key=value, always naming the user. */
#define LOGL(L, prio, fmt, ...) \
	qr_log((L)->pamh, (L)->cfg, (prio), "user=%s rhost=%s service=%s " fmt, \
	    (L)->user_l, (L)->rhost_l, (L)->service_l, ##__VA_ARGS__)

/*
 * Code points that a terminal or log viewer acts on instead of showing: the C1 controls
 * (U+0080-U+009F, e.g. NEL and CSI), Unicode's Bidi_Control characters (U+061C, U+200E-U+200F,
 * U+202A-U+202E, U+2066-U+2069), which reorder what is shown around them, and the line and
 * paragraph separators U+2028-U+2029.
 */
static int
hidden_code_point(uint32_t cp)
{
	return (cp >= 0x80 && cp <= 0x9f) || cp == 0x61c || cp == 0x200e || cp == 0x200f ||
	    (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

/*
 * Copy for logs and messages: at most n bytes of src, and never more than size - 1. Control
 * characters, quotes and backslashes become '?'; if the copied bytes are valid UTF-8, each
 * hidden_code_point() becomes one '?', else every non-ASCII byte does.
 */
static void
sanitize(char *dst, size_t size, const char *src, size_t n)
{
	const uint8_t *s = (const uint8_t *)src;
	size_t len = src == NULL ? 0 : strnlen(src, n), o = 0;
	int utf8;

	if (len > size - 1)
		len = size - 1;
	utf8 = frame_utf8_ok(s, len);
	for (size_t i = 0; i < len;) {
		uint8_t c = s[i];
		size_t k = 1;
		uint32_t cp = c;

		if (c >= 0x80 && utf8) {
			/* Valid UTF-8 (checked above): the lead byte gives the length. */
			k = c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
			cp = c & (0x7fu >> k);
			for (size_t j = 1; j < k; j++)
				cp = cp << 6 | (s[i + j] & 0x3fu);
		}
		if (c < 0x20 || c == 0x7f || c == '"' || c == '\\' || (c >= 0x80 && !utf8) ||
		    hidden_code_point(cp)) {
			dst[o++] = '?';
		} else {
			memcpy(dst + o, s + i, k);
			o += k;
		}
		i += k;
	}
	dst[o] = '\0';
}

/*
 * A value for a key=value log line, written as the agent writes them (agent/src/log.ts):
 * bare if it is only [A-Za-z0-9_.:@/+-], else in double quotes. sanitize() has replaced every
 * '"', so a quoted value cannot end early: a user name like "x result=approved" stays one
 * value (sshd runs PAM for invalid users too, so the client picks the name).
 */
static void
log_value(char *dst, size_t size, const char *src, size_t n)
{
	size_t len, plain;

	sanitize(dst + 1, size - 2, src, n);	/* room for the two quotes */
	len = strlen(dst + 1);
	plain = strspn(dst + 1, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:@/+-");
	if (len > 0 && plain == len) {
		memmove(dst, dst + 1, len + 1);
	} else {
		dst[0] = '"';
		dst[len + 1] = '"';
		dst[len + 2] = '\0';
	}
}

/* Name the user in logs and messages. */
static void
set_user_names(struct login *L, const char *user)
{
	sanitize(L->user_s, sizeof(L->user_s), user, 64);
	log_value(L->user_l, sizeof(L->user_l), user, 64);
}

static void
free_secret(char *s)
{
	if (s != NULL) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

/* The conversation, wrapped once. With resp, a reply is required (NULL is PAM_CONV_ERR). */
static int
converse(pam_handle_t *pamh, int style, const char *text, char **resp)
{
	const void *item = NULL;
	const struct pam_conv *conv;
	struct pam_message msg = { .msg_style = style, .msg = text };
	const struct pam_message *msgp = &msg;
	struct pam_response *replies = NULL;
	int rc;

	if (resp != NULL)
		*resp = NULL;
	rc = pam_get_item(pamh, PAM_CONV, &item);
	conv = item;
	if (rc != PAM_SUCCESS || conv == NULL || conv->conv == NULL)
		return PAM_CONV_ERR;
	rc = conv->conv(1, &msgp, &replies, conv->appdata_ptr);
	if (rc == PAM_SUCCESS && resp != NULL) {
		if (replies == NULL || replies[0].resp == NULL) {
			rc = PAM_CONV_ERR;
		} else {
			*resp = replies[0].resp;
			replies[0].resp = NULL;
		}
	}
	if (replies != NULL) {
		free_secret(replies[0].resp);
		free(replies);
	}
	return rc;
}

/*
 * Show a long text as PAM_TEXT_INFO messages of at most QR_INFO_CHUNK bytes, split at line
 * ends. OpenSSH >= 10.3 passes info messages to the client at once but cuts each at about
 * 1 KiB, so a QR in one message would arrive cut off. Each chunk goes without its final
 * newline: conversation functions end every message with one.
 */
#define QR_INFO_CHUNK 960
static int
show_info(pam_handle_t *pamh, const char *text)
{
	char chunk[QR_INFO_CHUNK + 1];
	const char *p = text;
	int rc = PAM_SUCCESS;

	while (*p != '\0' && rc == PAM_SUCCESS) {
		size_t take = strnlen(p, QR_INFO_CHUNK + 1);

		if (take > QR_INFO_CHUNK) {
			/* Up to the last line end in the chunk; a longer line is cut where it must be. */
			take = QR_INFO_CHUNK;
			for (size_t i = QR_INFO_CHUNK; i > 0; i--) {
				if (p[i - 1] == '\n') {
					take = i;
					break;
				}
			}
		}
		memcpy(chunk, p, take);
		chunk[take] = '\0';
		if (chunk[take - 1] == '\n')
			chunk[take - 1] = '\0';
		rc = converse(pamh, PAM_TEXT_INFO, chunk, NULL);
		p += take;
	}
	explicit_bzero(chunk, sizeof(chunk));
	return rc;
}

/* Tell the user something (PAM_ERROR_MSG / PAM_TEXT_INFO); quiet under PAM_SILENT. */
static void
say(struct login *L, int style, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
say(struct login *L, int style, const char *fmt, ...)
{
	char text[768];
	va_list ap;

	if (L->cfg->silent)
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	(void)converse(L->pamh, style, text, NULL);
}

/* "12 34-56" -> "123456". Returns 1 for 1..16 digits, 0 for an empty answer, -1 otherwise. */
static int
parse_digits(const char *in, char out[17])
{
	size_t n = 0;

	for (; *in != '\0'; in++) {
		if (*in == ' ' || *in == '-')
			continue;
		if (*in < '0' || *in > '9' || n == 16) {
			explicit_bzero(out, 17);
			return -1;
		}
		out[n++] = *in;
	}
	out[n] = '\0';
	return n > 0 ? 1 : 0;
}

/*
 * The way out of a QR the terminal garbles: "a" asks for the plain ASCII QR, "t" for the
 * payload as text only (any case, spaces around allowed). Returns QR_QR_ASCII, QR_QR_TEXT,
 * or -1 for any other answer.
 */
static int
rerender_style(const char *in)
{
	char c = 0;

	for (; *in != '\0'; in++) {
		if (*in == ' ')
			continue;
		if (c != 0)
			return -1;
		c = *in;
	}
	if (c == 'a' || c == 'A')
		return QR_QR_ASCII;
	if (c == 't' || c == 'T')
		return QR_QR_TEXT;
	return -1;
}

static int64_t
min64(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

/* The first BEGIN met a stopping agent (struct login, begin_retry). Only a close before any
 * byte of a reply: a reply cut mid-frame is not a restart. */
static int
begin_may_retry(const struct login *L, int rc)
{
	return rc == QR_AGENT_E_CLOSED && L->begin_retry && L->agent->rx_seen == 0;
}

/* Send L->agent->tx and read the reply. WAIT is bounded by the login deadline (the agent
 * answers at the verdict or at expiry); other requests also by QR_IO_TIMEOUT_MS. */
static int
request(struct login *L, struct qr_msg *reply, int is_wait)
{
	int64_t deadline = L->deadline_ms + QR_GRACE_MS;
	char why[128];
	int rc;

	if (!is_wait)
		deadline = min64(deadline, qr_now_ms() + QR_IO_TIMEOUT_MS);
	rc = agent_request(L->agent, reply, deadline);
	if (rc == QR_AGENT_OK)
		return rc;
	if (begin_may_retry(L, rc)) {
		LOGL(L, LOG_NOTICE, "agent=closed-before-challenge action=retry");
		return rc;
	}
	if (rc == QR_AGENT_E_FRAME)
		snprintf(why, sizeof(why), "%s", frame_strerror(L->agent->frame_err));
	else if (rc == QR_AGENT_E_IO)
		snprintf(why, sizeof(why), "%s", strerror(L->agent->sys_errno));
	else
		why[0] = '\0';
	LOGL(L, LOG_ERR, "result=error cause=\"%s\" detail=\"%s\"", agent_strerror(rc), why);
	if (rc == QR_AGENT_E_FRAME)
		say(L, PAM_ERROR_MSG, "%s", MSG_BAD_REPLY);
	else if (rc == QR_AGENT_E_TIMEOUT && qr_now_ms() >= L->deadline_ms)
		say(L, PAM_ERROR_MSG, "%s", MSG_EXPIRED);
	else
		say(L, PAM_ERROR_MSG, "%s", MSG_LOST);
	return rc;
}

static void
bad_reply(struct login *L, const char *what)
{
	LOGL(L, LOG_ERR, "result=error cause=\"unexpected reply from the agent\" detail=\"%s\"", what);
	say(L, PAM_ERROR_MSG, "%s", MSG_BAD_REPLY);
}

/* A final failure verdict: log it and tell the user what happened. */
static void
verdict_failed(struct login *L, const struct qr_msg *v, const char *how)
{
	const struct qr_field *m = &v->f[QR_VERDICT_MESSAGE];
	char text[520];

	sanitize(text, sizeof(text), (const char *)m->val, m->present ? m->len : 0);
	switch (v->f[QR_VERDICT_RESULT].num) {
	case QR_DENIED:
		LOGL(L, LOG_NOTICE, "result=denied how=%s cause=\"phone denied\"", how);
		say(L, PAM_ERROR_MSG, "%s", MSG_DENIED);
		break;
	case QR_EXPIRED:
		LOGL(L, LOG_NOTICE, "result=expired how=%s cause=\"session expired\"", how);
		say(L, PAM_ERROR_MSG, "%s", MSG_EXPIRED);
		break;
	case QR_LOCKED:
	case QR_CODE_WRONG:	/* with tries_left 0 */
		LOGL(L, LOG_NOTICE, "result=locked how=code cause=\"too many wrong codes\"");
		say(L, PAM_ERROR_MSG, "%s", MSG_LOCKED);
		break;
	default:	/* QR_ERROR */
		LOGL(L, LOG_ERR, "result=error how=%s cause=\"agent error\" detail=\"%s\"", how, text);
		say(L, PAM_ERROR_MSG, "qrauth: %s", text[0] ? text : "the login approval service failed");
		break;
	}
}

/* Build "qr_text prompt" for the first prompt or the info message. */
static char *
challenge_text(const struct qr_msg *c, int add_space)
{
	const struct qr_field *qr = &c->f[QR_CHALLENGE_QR_TEXT], *pr = &c->f[QR_CHALLENGE_PROMPT];
	int nl = qr->len == 0 || qr->val[qr->len - 1] != '\n';
	int sp = add_space && (pr->len == 0 || pr->val[pr->len - 1] != ' ');
	char *s = malloc((size_t)qr->len + (size_t)pr->len + 3);

	if (s != NULL) {
		char *p = s;

		memcpy(p, qr->val, qr->len);
		p += qr->len;
		if (nl)
			*p++ = '\n';
		memcpy(p, pr->val, pr->len);
		p += pr->len;
		if (sp)
			*p++ = ' ';
		*p = '\0';
	}
	return s;
}

/*
 * getpwnam_r into a malloc'd buffer that grows on ERANGE up to QR_PW_BUF_MAX. Returns 1 with
 * *pw filled (its strings live in *buf, which the caller frees), 0 if there is no such user,
 * -1 if the lookup failed (errno set), -2 out of memory. *buf is NULL unless 1 is returned.
 */
static int
lookup_user(const char *name, struct passwd *pw, char **buf)
{
	struct passwd *res = NULL;
	size_t size = QR_PW_BUF_START;
	int err;

	for (;;) {
		if ((*buf = malloc(size)) == NULL)
			return -2;
		err = getpwnam_r(name, pw, *buf, size, &res);
		if (err != ERANGE || size >= QR_PW_BUF_MAX)
			break;
		free(*buf);
		size *= 2;
	}
	if (err == 0 && res != NULL)
		return 1;
	free(*buf);
	*buf = NULL;
	/* getpwnam_r(3): "not found" may also come as one of these errors. */
	if (err == 0 || err == ENOENT || err == ESRCH || err == EBADF || err == EPERM)
		return 0;
	errno = err;
	return -1;
}

/* Services named like sshd's PAM service (as the agent's isSshdService). */
static int
is_sshd(const char *service)
{
	return strcmp(service, "sshd") == 0 || strncmp(service, "sshd-", 5) == 0 ||
	    strncmp(service, "sshd_", 5) == 0;
}

/*
 * The login fails before any QR: the agent cannot be reached (failmode=secure), or the user
 * cannot be looked up. OpenSSH before 10.3 drops PAM_ERROR_MSG and PAM_TEXT_INFO unless a
 * prompt follows, so over sshd the user would see only "Permission denied": there the message
 * goes in a prompt (its answer is ignored). mode=info says sshd shows info messages at once,
 * so it keeps the plain error message.
 */
static void
tell_early_failure(struct login *L, const char *msg)
{
	char text[256];
	char *resp = NULL;

	if (L->cfg->silent)
		return;
	if (!is_sshd(L->service) || L->cfg->mode == QR_MODE_INFO) {
		say(L, PAM_ERROR_MSG, "%s", msg);
		return;
	}
	snprintf(text, sizeof(text), "%s Press Enter.", msg);
	/* A failed conversation changes nothing: the login fails either way. */
	(void)converse(L->pamh, PAM_PROMPT_ECHO_OFF, text, &resp);
	free_secret(resp);
}

/*
 * The socket must be served by root (the agent, or systemd's socket activation) or by the
 * agentuser: anyone else listening there may be impersonating the agent. Returns
 * PAM_SUCCESS if trusted, else PAM_AUTH_ERR (logged, user told) or PAM_BUF_ERR.
 */
static int
check_agent_peer(struct login *L)
{
	struct passwd pw;
	char *buf = NULL;
	uid_t peer;
	int rc, err;

	if (agent_peer_uid(L->agent, &peer) != QR_AGENT_OK) {
		LOGL(L, LOG_ERR, "result=error cause=\"cannot get the agent socket's peer credentials\" "
		    "socket=%s detail=\"%s\"", L->cfg->socket_path, strerror(L->agent->sys_errno));
		say(L, PAM_ERROR_MSG, "%s", MSG_WRONG_AGENT);
		return PAM_AUTH_ERR;
	}
	if (peer == 0)
		return PAM_SUCCESS;
	rc = lookup_user(L->cfg->agentuser, &pw, &buf);
	err = errno;
	if (rc == 1 && pw.pw_uid == peer) {
		free(buf);
		return PAM_SUCCESS;
	}
	free(buf);
	if (rc == -2) {
		LOGL(L, LOG_CRIT, "result=error cause=\"out of memory\"");
		return PAM_BUF_ERR;
	}
	if (rc == -1)
		LOGL(L, LOG_WARNING, "agentuser=%s passwd=error detail=\"%s\"", L->cfg->agentuser,
		    strerror(err));
	LOGL(L, LOG_ERR, "result=error cause=\"agent socket is served by uid %lu, not root or %s\" "
	    "socket=%s", (unsigned long)peer, L->cfg->agentuser, L->cfg->socket_path);
	say(L, PAM_ERROR_MSG, "%s", MSG_WRONG_AGENT);
	return PAM_AUTH_ERR;
}

static const char *
get_item_str(pam_handle_t *pamh, int type)
{
	const void *item = NULL;

	return pam_get_item(pamh, type, &item) == PAM_SUCCESS ? item : NULL;
}

/*
 * sshd puts the methods it has verified so far, with their keys, in SSH_AUTH_INFO_0 just
 * before pam_authenticate (OpenSSH auth-pam.c, expose_authinfo). The agent binds a lease to
 * the public key in it. Sent only with `lease`; one that is too long or not UTF-8 is left
 * out (no lease, never a failed login) and logged.
 */
static void
add_auth_info(struct login *L, struct qr_frame *tx)
{
	const char *info = pam_getenv(L->pamh, "SSH_AUTH_INFO_0");
	size_t n;

	if (info == NULL || info[0] == '\0') {
		LOGL(L, LOG_INFO, "lease=none cause=\"no SSH_AUTH_INFO_0 from sshd\"");
		return;
	}
	n = strnlen(info, QR_MAX_AUTH_INFO + 1);
	if (n > QR_MAX_AUTH_INFO) {
		LOGL(L, LOG_WARNING, "lease=none cause=\"SSH_AUTH_INFO_0 longer than %u bytes\"",
		    QR_MAX_AUTH_INFO);
		return;
	}
	if (!frame_utf8_ok((const uint8_t *)info, n)) {
		LOGL(L, LOG_WARNING, "lease=none cause=\"SSH_AUTH_INFO_0 is not UTF-8\"");
		return;
	}
	frame_add_str(tx, QR_BEGIN_AUTH_INFO, info);
}

/*
 * Show a CHALLENGE: the first one, or the same session redrawn after RENDER. The agent's
 * expiry is authoritative if it is earlier than ours. In prompt mode the QR goes into the
 * next prompt (*text, which the caller frees); in info mode it is shown here. PAM_SUCCESS
 * or the PAM error to return.
 */
static int
show_challenge(struct login *L, const struct qr_msg *c, int mode, char **text)
{
	int rc;

	L->deadline_ms = min64(L->deadline_ms,
	    qr_now_ms() + (int64_t)c->f[QR_CHALLENGE_EXPIRES].num * 1000);
	free_secret(*text);
	if ((*text = challenge_text(c, mode == QR_MODE_PROMPT)) == NULL) {
		LOGL(L, LOG_CRIT, "result=error cause=\"out of memory\"");
		return PAM_BUF_ERR;
	}
	if (mode == QR_MODE_PROMPT)
		return PAM_SUCCESS;	/* OpenSSH < 10.3 shows text only with a prompt: one message */
	/* The QR is essential, so it is shown even under PAM_SILENT. */
	if ((rc = show_info(L->pamh, *text)) != PAM_SUCCESS) {
		LOGL(L, LOG_ERR, "result=error cause=\"conversation failed\" detail=\"%s\"",
		    pam_strerror(L->pamh, rc));
		return PAM_CONV_ERR;
	}
	return PAM_SUCCESS;
}

static int
begin(struct login *L, struct qr_msg *reply)
{
	struct qr_frame *tx = &L->agent->tx;
	int rc;

	frame_begin(tx, QR_BEGIN);
	frame_add_str(tx, QR_BEGIN_USER, L->user);
	if (L->rhost != NULL && L->rhost[0] != '\0')
		frame_add_str(tx, QR_BEGIN_RHOST, L->rhost);
	frame_add_str(tx, QR_BEGIN_SERVICE, L->service);
	if (L->tty != NULL && L->tty[0] != '\0')
		frame_add_str(tx, QR_BEGIN_TTY, L->tty);
	frame_add_u8(tx, QR_BEGIN_MODE, (uint8_t)L->cfg->mode);
	frame_add_u8(tx, QR_BEGIN_QR, (uint8_t)L->cfg->qr);
	frame_add_u32(tx, QR_BEGIN_TIMEOUT, L->cfg->timeout);
	if (L->cfg->authfile != NULL)
		frame_add_str(tx, QR_BEGIN_AUTHFILE, L->cfg->authfile);
	if (L->have_pw) {
		/* The agent needs no NSS lookup of its own; they go together. */
		frame_add_u32(tx, QR_BEGIN_UID, (uint32_t)L->uid);
		frame_add_str(tx, QR_BEGIN_HOME, L->home);
	}
	if (L->cfg->uv_required)
		frame_add_u8(tx, QR_BEGIN_UV, 1);
	/* Only for the agent's count of the waiting logins a caller may hold: a name no account can
	 * have (over 256 bytes, not UTF-8) is left out rather than failing the login over it. */
	if (L->ruser != NULL && L->ruser[0] != '\0') {
		size_t n = strnlen(L->ruser, 257);

		if (n <= 256 && frame_utf8_ok((const uint8_t *)L->ruser, n))
			frame_add_str(tx, QR_BEGIN_RUSER, L->ruser);
	}
	if (L->cfg->lease) {
		frame_add_u8(tx, QR_BEGIN_LEASE, 1);
		add_auth_info(L, tx);
	}
	if ((rc = frame_finish(tx)) != 0) {
		/* user/rhost/service/tty/home too long or not UTF-8: refuse rather than truncate. */
		LOGL(L, LOG_ERR, "result=error cause=\"cannot build BEGIN\" detail=\"%s\"",
		    frame_strerror(rc));
		return -1;
	}
	return request(L, reply, 0);
}

PUBLIC int
pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	struct qr_cfg cfg;
	struct login L;
	struct qr_msg reply;
	char *text = NULL, *resp = NULL, digits[17];
	const char *ask = NULL, *how = "online";
	char wrong[128];
	int retval = PAM_AUTH_ERR, rc, err, mode = 0, action = 0, style = QR_QR_UTF8;
	enum { ASK, WAIT, CODE, RENDER };

	memset(&L, 0, sizeof(L));
	memset(digits, 0, sizeof(digits));
	L.pamh = pamh;
	L.cfg = &cfg;
	strcpy(L.user_s, "?");
	strcpy(L.user_l, "\"?\"");
	strcpy(L.rhost_l, "-");
	strcpy(L.service_l, "\"?\"");
	if (cfg_init(pamh, flags, argc, argv, &cfg) != 0) {
		/* cfg_init logged which option; name the user without prompting for it. */
		if ((L.user = get_item_str(pamh, PAM_USER)) != NULL && L.user[0] != '\0')
			set_user_names(&L, L.user);
		LOGL(&L, LOG_ERR, "result=config_error cause=\"invalid module options\"");
		retval = PAM_SERVICE_ERR;
		goto done;
	}
	L.deadline_ms = qr_now_ms() + (int64_t)cfg.timeout * 1000;

	if ((rc = pam_get_user(pamh, &L.user, NULL)) != PAM_SUCCESS || L.user == NULL ||
	    L.user[0] == '\0') {
		LOGL(&L, LOG_ERR, "result=error cause=\"cannot get user name\" detail=\"%s\"",
		    pam_strerror(pamh, rc));
		goto done;
	}
	set_user_names(&L, L.user);
	if ((L.rhost = get_item_str(pamh, PAM_RHOST)) != NULL && L.rhost[0] != '\0')
		log_value(L.rhost_l, sizeof(L.rhost_l), L.rhost, 64);
	if ((L.service = get_item_str(pamh, PAM_SERVICE)) != NULL)
		log_value(L.service_l, sizeof(L.service_l), L.service, 64);
	L.tty = get_item_str(pamh, PAM_TTY);
	L.ruser = get_item_str(pamh, PAM_RUSER);
	if (L.service == NULL) {
		LOGL(&L, LOG_ERR, "result=error cause=\"no PAM_SERVICE\"");
		goto done;
	}
	{
		struct passwd pw;
		const char *failed = NULL;
		char given[96], msg[192];

		/* No such user: send no uid/home; the agent answers NO_DEVICE, as for a user
		 * without a phone. */
		rc = lookup_user(L.user, &pw, &L.pwbuf);
		err = errno;
		if (rc == -2) {
			LOGL(&L, LOG_CRIT, "result=error cause=\"out of memory\"");
			retval = PAM_BUF_ERR;
			goto done;
		}
		if (rc == -1)
			failed = strerror(err);
		else if (rc == 1 && (pw.pw_name == NULL || pw.pw_name[0] == '\0' || pw.pw_dir == NULL))
			failed = "passwd entry without a name or home";
		if (failed != NULL) {
			/* NSS failed (say, its LDAP server is out of reach), which is not "no such
			 * user": sent on, the agent would look in /etc/passwd, miss a directory user
			 * and answer NO_DEVICE, which nouserok passes over. So fail closed, before
			 * the agent, with PAM_AUTH_ERR as for an agent out of reach (OpenSSH, too,
			 * fails a user it cannot look up); not PAM_AUTHINFO_UNAVAIL or
			 * PAM_USER_UNKNOWN, which stacks written for pam_sss often map to ignore. */
			LOGL(&L, LOG_ERR, "result=error cause=\"user lookup failed\" detail=\"%s\"", failed);
			snprintf(msg, sizeof(msg), "qrauth: cannot look up user %s right now; try again, "
			    "or ask the administrator.", L.user_s);
			tell_early_failure(&L, msg);
			goto done;
		}
		if (rc == 1) {
			L.have_pw = 1;
			L.uid = pw.pw_uid;
			L.home = pw.pw_dir;
			if (strcmp(pw.pw_name, L.user) != 0) {
				/* NSS that ignores case (sssd case_sensitive=false, winbind) or maps
				 * aliases: "ALICE" logs in as alice. The agent must be asked about
				 * alice (her devices file, her leases, the name the phone shows), or
				 * it finds no phone and nouserok skips the QR. */
				log_value(given, sizeof(given), L.user, 64);
				L.user = pw.pw_name;
				set_user_names(&L, L.user);
				LOGL(&L, LOG_INFO, "pam_user=%s note=\"the account's own name is used\"", given);
			}
			LOGL(&L, LOG_DEBUG, "passwd uid=%lu", (unsigned long)L.uid);
		} else {
			LOGL(&L, LOG_DEBUG, "passwd=none");
		}
	}

	if ((L.agent = calloc(1, sizeof(*L.agent))) == NULL) {
		LOGL(&L, LOG_CRIT, "result=error cause=\"out of memory\"");
		retval = PAM_BUF_ERR;
		goto done;
	}
	agent_init(L.agent);
	for (L.begin_retry = 1;; L.begin_retry = 0) {
		rc = agent_connect(L.agent, cfg.socket_path, min64(L.deadline_ms, qr_now_ms() + QR_IO_TIMEOUT_MS));
		if (rc != QR_AGENT_OK) {
			/* failmode=open steps aside only when no agent is there. One that is there
			 * but does not accept in time (backlog full: flooded, or wedged) fails
			 * closed, or flooding the socket would switch the QR step off. */
			int step_aside = cfg.failmode_open && rc == QR_AGENT_E_NOAGENT;

			LOGL(&L, LOG_ERR, "result=%s cause=\"agent unreachable\" socket=%s detail=\"%s\"",
			    step_aside ? "ignored" : "error", cfg.socket_path, strerror(L.agent->sys_errno));
			if (step_aside)
				retval = PAM_IGNORE;
			else
				tell_early_failure(&L, rc == QR_AGENT_E_NOAGENT ? MSG_UNREACHABLE :
				    MSG_NOT_ANSWERING);
			goto done;
		}
		/* Someone else listening is not "agent down", whatever failmode says. */
		if ((rc = check_agent_peer(&L)) != PAM_SUCCESS) {
			retval = rc;
			goto done;
		}
		LOGL(&L, LOG_DEBUG, "connected socket=%s", cfg.socket_path);

		rc = begin(&L, &reply);
		if (rc == QR_AGENT_OK)
			break;
		if (!begin_may_retry(&L, rc))
			goto done;
		agent_close(L.agent);
	}
	L.begin_retry = 0;
	if (reply.type == QR_VERDICT) {
		const struct qr_field *res = &reply.f[QR_VERDICT_RESULT];

		if (res->num == QR_NO_DEVICE && cfg.nouserok) {
			LOGL(&L, LOG_INFO, "result=ignored cause=\"no enrolled device\" nouserok=1");
			retval = PAM_IGNORE;
		} else if (res->num == QR_NO_DEVICE) {
			LOGL(&L, LOG_NOTICE, "result=denied cause=\"no enrolled device\"");
			say(&L, PAM_ERROR_MSG, "qrauth: no phone is enrolled for user %s; run 'qrauth enroll'",
			    L.user_s);
		} else if (res->num == QR_ERROR) {
			verdict_failed(&L, &reply, "begin");
		} else if (res->num == QR_APPROVED && cfg.lease) {
			/* A lease from an earlier approval of this key (docs/pam_qrauth.8). */
			const struct qr_field *m = &reply.f[QR_VERDICT_MESSAGE];
			char note[520];

			LOGL(&L, LOG_NOTICE, "result=approved how=lease");
			if (m->present) {
				sanitize(note, sizeof(note), (const char *)m->val, m->len);
				say(&L, PAM_TEXT_INFO, "%s", note);
			}
			retval = PAM_SUCCESS;
		} else {
			bad_reply(&L, "verdict before challenge");
		}
		goto done;
	}
	if (reply.type != QR_CHALLENGE) {
		bad_reply(&L, "expected CHALLENGE");
		goto done;
	}
	mode = (int)reply.f[QR_CHALLENGE_MODE].num;
	if (mode != QR_MODE_PROMPT && mode != QR_MODE_INFO) {
		bad_reply(&L, "challenge mode");
		goto done;
	}
	LOGL(&L, LOG_DEBUG, "challenge mode=%s expires=%u", mode == QR_MODE_PROMPT ? "prompt" : "info",
	    reply.f[QR_CHALLENGE_EXPIRES].num);
	if ((rc = show_challenge(&L, &reply, mode, &text)) != PAM_SUCCESS) {
		retval = rc;
		goto done;
	}
	action = mode == QR_MODE_PROMPT ? ASK : WAIT;
	ask = mode == QR_MODE_PROMPT ? text : NULL;

	for (int round = 0; round < QR_MAX_ROUNDS; round++) {
		struct qr_frame *tx = &L.agent->tx;
		unsigned result;

		if (action == ASK) {
			rc = converse(pamh, PAM_PROMPT_ECHO_ON, ask, &resp);
			if (rc != PAM_SUCCESS) {
				LOGL(&L, LOG_ERR, "result=error cause=\"conversation failed\" detail=\"%s\"",
				    pam_strerror(pamh, rc));
				retval = PAM_CONV_ERR;
				goto done;
			}
			style = rerender_style(resp);
			rc = style >= 0 ? 0 : parse_digits(resp, digits);
			free_secret(resp);
			resp = NULL;
			if (style >= 0) {
				action = RENDER;
			} else if (rc < 0) {
				say(&L, PAM_ERROR_MSG, "%s", MSG_NOT_DIGITS);
				if (ask == text)
					ask = PROMPT_SHORT;	/* never repeat the QR */
				continue;
			} else {
				action = rc > 0 ? CODE : WAIT;
			}
		}
		if (qr_now_ms() >= L.deadline_ms) {
			LOGL(&L, LOG_NOTICE, "result=expired cause=\"login timed out\"");
			say(&L, PAM_ERROR_MSG, "%s", MSG_EXPIRED);
			goto done;
		}

		if (action == CODE) {
			how = "code";
			frame_begin(tx, QR_CODE);
			frame_add_str(tx, QR_CODE_DIGITS, digits);
			explicit_bzero(digits, sizeof(digits));
		} else if (action == RENDER) {
			how = "online";	/* the session may already have its verdict */
			frame_begin(tx, QR_RENDER);
			frame_add_u8(tx, QR_RENDER_QR, (uint8_t)style);
		} else {
			how = "online";
			frame_begin(tx, QR_WAIT);
			if (mode == QR_MODE_INFO)
				frame_add_u32(tx, QR_WAIT_MAX_WAIT, cfg.wait * 1000);
		}
		if (frame_finish(tx) != 0) {
			LOGL(&L, LOG_ERR, "result=error cause=\"cannot build request\"");
			goto done;
		}
		LOGL(&L, LOG_DEBUG, "request=%s", action == CODE ? "code" : action == RENDER ? "render" :
		    "wait");
		if (request(&L, &reply, action == WAIT) != QR_AGENT_OK)
			goto done;
		if (reply.type == QR_CHALLENGE && action == RENDER) {
			/* The same session drawn again: show it as the first one was. */
			if (reply.f[QR_CHALLENGE_MODE].num != (uint32_t)mode) {
				bad_reply(&L, "challenge mode changed");
				goto done;
			}
			LOGL(&L, LOG_INFO, "rerender style=%s", style == QR_QR_ASCII ? "ascii" : "text");
			if ((rc = show_challenge(&L, &reply, mode, &text)) != PAM_SUCCESS) {
				retval = rc;
				goto done;
			}
			action = mode == QR_MODE_PROMPT ? ASK : WAIT;
			ask = mode == QR_MODE_PROMPT ? text : NULL;
			continue;
		}
		if (reply.type != QR_VERDICT) {
			bad_reply(&L, "expected VERDICT");
			goto done;
		}
		result = reply.f[QR_VERDICT_RESULT].num;
		switch (result) {
		case QR_APPROVED:
			LOGL(&L, LOG_NOTICE, "result=approved how=%s", how);
			retval = PAM_SUCCESS;
			goto done;
		case QR_CODE_WRONG:
			if (action != CODE) {
				bad_reply(&L, "CODE_WRONG without a code");
				goto done;
			}
			if (reply.f[QR_VERDICT_TRIES_LEFT].present) {
				unsigned left = reply.f[QR_VERDICT_TRIES_LEFT].num;

				if (left == 0) {
					verdict_failed(&L, &reply, how);
					goto done;
				}
				snprintf(wrong, sizeof(wrong), "Wrong code, %u %s left. %s", left,
				    left == 1 ? "try" : "tries", PROMPT_SHORT);
			} else {
				snprintf(wrong, sizeof(wrong), "Wrong code. %s", PROMPT_SHORT);
			}
			LOGL(&L, LOG_NOTICE, "result=retry how=code cause=\"wrong code\"");
			ask = wrong;
			action = ASK;
			break;
		case QR_OFFLINE:
			if (action != WAIT) {
				bad_reply(&L, "OFFLINE without a wait");
				goto done;
			}
			LOGL(&L, LOG_INFO, "result=offline cause=\"no online verdict\"");
			ask = mode == QR_MODE_INFO ? PROMPT_INFO_OFFLINE : PROMPT_OFFLINE;
			action = ASK;
			break;
		case QR_DENIED:
		case QR_EXPIRED:
		case QR_LOCKED:
		case QR_ERROR:
			verdict_failed(&L, &reply, how);
			goto done;
		default:	/* NO_DEVICE here, or an unknown result */
			bad_reply(&L, "verdict result");
			goto done;
		}
	}
	LOGL(&L, LOG_NOTICE, "result=denied cause=\"too many rounds\"");
	say(&L, PAM_ERROR_MSG, "qrauth: too many attempts.");
	retval = PAM_MAXTRIES;

done:
	explicit_bzero(digits, sizeof(digits));
	free_secret(resp);
	free_secret(text);	/* the QR encodes the session nonce */
	explicit_bzero(&reply, sizeof(reply));
	if (L.agent != NULL) {
		agent_close(L.agent);
		free(L.agent);
	}
	free(L.pwbuf);
	return retval;
}

/* No credentials to set: like pam_u2f, succeed so that "auth" stacks with setcred work. */
PUBLIC int
pam_sm_setcred(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	(void)pamh;
	(void)flags;
	(void)argc;
	(void)argv;
	return PAM_SUCCESS;
}
