/* Option parsing. Anything unknown or malformed is an error: the module fails closed. */
#include "cfg.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <syslog.h>

#include <security/pam_ext.h>

#include "frame.h"

void
qr_log(pam_handle_t *pamh, const struct qr_cfg *cfg, int prio, const char *fmt, ...)
{
	va_list ap;

	if (prio == LOG_DEBUG && (cfg == NULL || !cfg->debug))
		return;
	va_start(ap, fmt);
	pam_vsyslog(pamh, LOG_AUTHPRIV | prio, fmt, ap);
	va_end(ap);
}

/* Strict unsigned decimal in [min, max]: no sign, no spaces, no trailing junk. */
static int
parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
	unsigned long v;
	char *end;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = (unsigned)v;
	return 0;
}

/* If arg is "name=value", return value, else NULL. */
static const char *
opt_value(const char *arg, const char *name)
{
	size_t n = strlen(name);

	return strncmp(arg, name, n) == 0 && arg[n] == '=' ? arg + n + 1 : NULL;
}

int
cfg_init(pam_handle_t *pamh, int flags, int argc, const char **argv, struct qr_cfg *cfg)
{
	const char *v;
	int rc = 0;

	memset(cfg, 0, sizeof(*cfg));
	cfg->socket_path = QR_DEFAULT_SOCKET;
	cfg->timeout = QR_DEFAULT_TIMEOUT;
	cfg->mode = QR_MODE_AUTO;
	cfg->qr = QR_QR_UTF8;
	cfg->wait = QR_DEFAULT_WAIT;
	cfg->agentuser = QR_DEFAULT_AGENTUSER;
	cfg->silent = ((unsigned)flags & PAM_SILENT) != 0;

	for (int i = 0; i < argc; i++) {
		const char *arg = argv[i];
		int ok = 1;

		if (arg == NULL) {
			ok = 0;
			arg = "(null)";
		} else if (strcmp(arg, "debug") == 0) {
			cfg->debug = 1;
		} else if (strcmp(arg, "nouserok") == 0) {
			cfg->nouserok = 1;
		} else if (strcmp(arg, "lease") == 0) {
			cfg->lease = 1;
		} else if ((v = opt_value(arg, "uv")) != NULL) {
			/* Only a step up: a line cannot weaken the agent's userVerification. */
			ok = strcmp(v, "required") == 0;
			cfg->uv_required = ok;
		} else if ((v = opt_value(arg, "socket")) != NULL) {
			/* Absolute, and it must fit sun_path with its NUL. */
			ok = v[0] == '/' && strlen(v) < sizeof(((struct sockaddr_un *)0)->sun_path);
			cfg->socket_path = v;
		} else if ((v = opt_value(arg, "timeout")) != NULL) {
			ok = parse_uint(v, 1, 3600, &cfg->timeout) == 0;
		} else if ((v = opt_value(arg, "wait")) != NULL) {
			ok = parse_uint(v, 1, 3600, &cfg->wait) == 0;
		} else if ((v = opt_value(arg, "mode")) != NULL) {
			if (strcmp(v, "auto") == 0)
				cfg->mode = QR_MODE_AUTO;
			else if (strcmp(v, "prompt") == 0)
				cfg->mode = QR_MODE_PROMPT;
			else if (strcmp(v, "info") == 0)
				cfg->mode = QR_MODE_INFO;
			else
				ok = 0;
		} else if ((v = opt_value(arg, "qr")) != NULL) {
			if (strcmp(v, "utf8") == 0)
				cfg->qr = QR_QR_UTF8;
			else if (strcmp(v, "ascii") == 0)
				cfg->qr = QR_QR_ASCII;
			else
				ok = 0;
		} else if ((v = opt_value(arg, "authfile")) != NULL) {
			ok = v[0] != '\0' && strlen(v) <= QR_MAX_AUTHFILE &&
			    frame_utf8_ok((const unsigned char *)v, strlen(v));
			cfg->authfile = v;
		} else if ((v = opt_value(arg, "agentuser")) != NULL) {
			/* A user name for getpwnam(3); these characters also keep log lines intact. */
			size_t n = strlen(v);

			ok = n > 0 && n <= QR_MAX_AGENTUSER && v[0] != '-';
			for (size_t k = 0; k < n && ok; k++)
				ok = (v[k] >= 'a' && v[k] <= 'z') || (v[k] >= 'A' && v[k] <= 'Z') ||
				    (v[k] >= '0' && v[k] <= '9') || strchr("._-@$", v[k]) != NULL;
			cfg->agentuser = v;
		} else if ((v = opt_value(arg, "failmode")) != NULL) {
			if (strcmp(v, "secure") == 0)
				cfg->failmode_open = 0;
			else if (strcmp(v, "open") == 0)
				cfg->failmode_open = 1;
			else
				ok = 0;
		} else {
			qr_log(pamh, NULL, LOG_ERR, "result=config_error cause=\"unknown option\" "
			    "option=\"%.64s\"", arg);
			rc = -1;
			continue;
		}
		if (!ok) {
			qr_log(pamh, NULL, LOG_ERR, "result=config_error cause=\"invalid value\" "
			    "option=\"%.300s\"", arg);
			rc = -1;
		}
	}
	if (rc == 0)
		qr_log(pamh, cfg, LOG_DEBUG, "config socket=%s timeout=%u mode=%d qr=%d wait=%u "
		    "authfile=%s agentuser=%s nouserok=%d lease=%d uv_required=%d failmode=%s", cfg->socket_path,
		    cfg->timeout, cfg->mode, cfg->qr, cfg->wait,
		    cfg->authfile ? cfg->authfile : "(agent default)", cfg->agentuser, cfg->nouserok,
		    cfg->lease, cfg->uv_required, cfg->failmode_open ? "open" : "secure");
	return rc;
}
