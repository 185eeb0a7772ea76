/* Module options, parsed once per call from the PAM arguments (see README.md). */
#ifndef QR_CFG_H
#define QR_CFG_H

#include <security/pam_modules.h>

#define QR_DEFAULT_SOCKET "/run/qrauth.sock"
#define QR_DEFAULT_TIMEOUT 90	/* seconds, the whole login */
#define QR_DEFAULT_WAIT 60	/* seconds, info mode: online wait before offering the code */
#define QR_MAX_AUTHFILE 256
#define QR_DEFAULT_AGENTUSER "qrauth"	/* besides root, who may serve the agent socket */
#define QR_MAX_AGENTUSER 64

struct qr_cfg {
	const char *socket_path;	/* points into argv or a constant */
	unsigned timeout;		/* 1..3600 s */
	int mode;			/* QR_MODE_AUTO, _PROMPT, _INFO */
	int qr;				/* QR_QR_UTF8, _ASCII */
	unsigned wait;			/* 1..3600 s */
	const char *authfile;		/* NULL: the agent's default */
	const char *agentuser;		/* points into argv or a constant */
	int nouserok;
	int lease;			/* this service may be approved by a lease (docs/pam_qrauth.8) */
	int uv_required;		/* uv=required: approvals need the phone owner's fingerprint/PIN */
	int failmode_open;
	int debug;
	int silent;			/* PAM_SILENT: no informational messages */
};

/* Returns 0, or -1 after logging which option is wrong (the caller fails closed). */
int cfg_init(pam_handle_t *pamh, int flags, int argc, const char **argv, struct qr_cfg *cfg);

/* The one logging helper: syslog via PAM, LOG_AUTHPRIV; LOG_DEBUG only with `debug`. */
void qr_log(pam_handle_t *pamh, const struct qr_cfg *cfg, int prio, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
