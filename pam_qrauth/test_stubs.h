/*
 * Stand-ins for libpam used by test_module and fuzz/fuzz_module (in the spirit of
 * google-authenticator-libpam's tests): pam_get_item/pam_get_user/pam_syslog/pam_strerror
 * and a scripted conversation that records everything the module shows.
 */
#ifndef QR_TEST_STUBS_H
#define QR_TEST_STUBS_H

#include <stddef.h>
#include <security/pam_modules.h>

struct stub_pam {
	const char *user;		/* what pam_get_user returns */
	int get_user_rc;
	const char *rhost, *service, *tty;	/* NULL: item not set */
	const char *auth_info;		/* what pam_getenv("SSH_AUTH_INFO_0") returns */
	int no_conv;			/* PAM_CONV item missing */
	/* Answers for PAM_PROMPT_ECHO_*, in order; past the end the conversation fails. */
	const char *answers[16];
	size_t n_answers;
	/* Optional: decide each answer (fuzzer). Return 0 with *out malloc'd, or -1 to fail. */
	int (*answer_hook)(int style, const char *msg, char **out);
};

extern struct stub_pam stub;
/* Everything the module showed: "<STYLE>: <text>\n" per message (bounded, truncated). */
extern char stub_transcript[1 << 18];
extern size_t stub_transcript_len;
/* Every syslog line, one per line (bounded). */
extern char stub_log[1 << 16];
extern size_t stub_log_len;
extern int stub_n_prompts, stub_n_infos, stub_n_errors, stub_n_asked;

void stub_reset(void);
pam_handle_t *stub_handle(void);

#endif
