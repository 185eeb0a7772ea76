/*
 * Test-only LD_PRELOAD library for pamtester runs of pam_qrauth (test/pam.test.ts), for what
 * cannot be set up here with a real NSS service (no sssd, winbind or LDAP in the test host):
 *
 *   QRAUTH_TEST_NSS_CASEFOLD=1   getpwnam_r() matches names case-insensitively and returns the
 *                                account's own (lower-case) entry, as sssd with
 *                                case_sensitive=false or winbind do: "ALICE" finds alice.
 *   QRAUTH_TEST_NSS_EIO=<name>   getpwnam_r(<name>) fails with EIO, as an NSS module does when
 *                                its directory server cannot be reached.
 *
 * It also copies every pam_vsyslog()/pam_syslog() line to stderr as "pam_syslog: <line>", so a
 * test can read the module's log lines without a syslog daemon. Never installed.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <security/pam_appl.h>
#include <security/pam_ext.h>

typedef int (*getpwnam_r_fn)(const char *, struct passwd *, char *, size_t, struct passwd **);

int
getpwnam_r(const char *name, struct passwd *pw, char *buf, size_t size, struct passwd **res)
{
	static getpwnam_r_fn real;
	const char *eio = getenv("QRAUTH_TEST_NSS_EIO");
	char folded[256];
	size_t i;

	if (real == NULL && (real = (getpwnam_r_fn)dlsym(RTLD_NEXT, "getpwnam_r")) == NULL)
		return ENOSYS;
	*res = NULL;
	if (eio != NULL && strcmp(name, eio) == 0)
		return EIO;
	if (getenv("QRAUTH_TEST_NSS_CASEFOLD") == NULL)
		return real(name, pw, buf, size, res);
	for (i = 0; name[i] != '\0' && i < sizeof(folded) - 1; i++)
		folded[i] = (char)tolower((unsigned char)name[i]);
	folded[i] = '\0';
	return real(folded, pw, buf, size, res);
}

void
pam_vsyslog(const pam_handle_t *pamh, int priority, const char *fmt, va_list args)
{
	char line[4096];

	(void)pamh;
	(void)priority;
	vsnprintf(line, sizeof(line), fmt, args);
	fprintf(stderr, "pam_syslog: %s\n", line);
}

void
pam_syslog(const pam_handle_t *pamh, int priority, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	pam_vsyslog(pamh, priority, fmt, ap);
	va_end(ap);
}
