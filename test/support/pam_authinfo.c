/*
 * Test-only PAM module: puts the contents of file=<path> into the PAM environment as
 * SSH_AUTH_INFO_0, the way sshd does before pam_authenticate, so tests can hand pam_qrauth
 * malformed, oversized or key-less values (test/leases.test.ts). Never installed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <security/pam_modules.h>
#include <security/pam_ext.h>

PAM_EXTERN int
pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	static char buf[65536];
	const char *path = NULL;
	size_t n;
	FILE *f;

	(void)flags;
	for (int i = 0; i < argc; i++)
		if (strncmp(argv[i], "file=", 5) == 0)
			path = argv[i] + 5;
	if (path == NULL || (f = fopen(path, "r")) == NULL)
		return PAM_SERVICE_ERR;
	memcpy(buf, "SSH_AUTH_INFO_0=", 16);
	n = fread(buf + 16, 1, sizeof(buf) - 17, f);
	fclose(f);
	buf[16 + n] = '\0';
	return pam_putenv(pamh, buf) == PAM_SUCCESS ? PAM_IGNORE : PAM_SERVICE_ERR;
}

PAM_EXTERN int
pam_sm_setcred(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
	(void)pamh, (void)flags, (void)argc, (void)argv;
	return PAM_IGNORE;
}
