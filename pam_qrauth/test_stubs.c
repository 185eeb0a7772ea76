#include "test_stubs.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <security/pam_appl.h>
#include <security/pam_ext.h>

struct stub_pam stub;
char stub_transcript[1 << 18];
size_t stub_transcript_len;
char stub_log[1 << 16];
size_t stub_log_len;
int stub_n_prompts, stub_n_infos, stub_n_errors, stub_n_asked;

static void
append(char *buf, size_t size, size_t *len, const char *s)
{
	size_t n = strlen(s);

	if (n > size - 1 - *len)
		n = size - 1 - *len;
	memcpy(buf + *len, s, n);
	*len += n;
	buf[*len] = '\0';
}

static int
stub_conv(int n, const struct pam_message **msg, struct pam_response **resp, void *appdata)
{
	struct pam_response *r;

	(void)appdata;
	if (n != 1)	/* the module always sends one message at a time */
		return PAM_CONV_ERR;
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return PAM_BUF_ERR;
	switch (msg[0]->msg_style) {
	case PAM_PROMPT_ECHO_ON:
	case PAM_PROMPT_ECHO_OFF:
		append(stub_transcript, sizeof(stub_transcript), &stub_transcript_len, "PROMPT: ");
		stub_n_prompts++;
		break;
	case PAM_TEXT_INFO:
		append(stub_transcript, sizeof(stub_transcript), &stub_transcript_len, "INFO: ");
		stub_n_infos++;
		break;
	case PAM_ERROR_MSG:
		append(stub_transcript, sizeof(stub_transcript), &stub_transcript_len, "ERROR: ");
		stub_n_errors++;
		break;
	default:
		free(r);
		return PAM_CONV_ERR;
	}
	append(stub_transcript, sizeof(stub_transcript), &stub_transcript_len, msg[0]->msg);
	append(stub_transcript, sizeof(stub_transcript), &stub_transcript_len, "\n");

	if (msg[0]->msg_style == PAM_PROMPT_ECHO_ON || msg[0]->msg_style == PAM_PROMPT_ECHO_OFF) {
		size_t i = (size_t)stub_n_asked++;

		if (stub.answer_hook != NULL) {
			if (stub.answer_hook(msg[0]->msg_style, msg[0]->msg, &r->resp) != 0) {
				free(r);
				return PAM_CONV_ERR;
			}
		} else if (i < stub.n_answers && stub.answers[i] != NULL) {
			r->resp = strdup(stub.answers[i]);
		} else {
			free(r);
			return PAM_CONV_ERR;
		}
	}
	*resp = r;
	return PAM_SUCCESS;
}

static struct pam_conv conv = { stub_conv, NULL };

void
stub_reset(void)
{
	memset(&stub, 0, sizeof(stub));
	stub.user = "alice";
	stub.get_user_rc = PAM_SUCCESS;
	stub.rhost = "203.0.113.7";
	stub.service = "sshd";
	stub.tty = "ssh";
	stub_transcript_len = 0;
	stub_transcript[0] = '\0';
	stub_log_len = 0;
	stub_log[0] = '\0';
	stub_n_prompts = stub_n_infos = stub_n_errors = stub_n_asked = 0;
}

pam_handle_t *
stub_handle(void)
{
	return (pam_handle_t *)&stub;
}

int
pam_get_item(const pam_handle_t *pamh, int item_type, const void **item)
{
	(void)pamh;
	switch (item_type) {
	case PAM_CONV:
		*item = stub.no_conv ? NULL : &conv;
		return PAM_SUCCESS;
	case PAM_RHOST:
		*item = stub.rhost;
		return PAM_SUCCESS;
	case PAM_SERVICE:
		*item = stub.service;
		return PAM_SUCCESS;
	case PAM_TTY:
		*item = stub.tty;
		return PAM_SUCCESS;
	case PAM_USER:
		*item = stub.user;
		return PAM_SUCCESS;
	default:
		*item = NULL;
		return PAM_BAD_ITEM;
	}
}

const char *
pam_getenv(pam_handle_t *pamh, const char *name)
{
	(void)pamh;
	return strcmp(name, "SSH_AUTH_INFO_0") == 0 ? stub.auth_info : NULL;
}

int
pam_get_user(pam_handle_t *pamh, const char **user, const char *prompt)
{
	(void)pamh;
	(void)prompt;
	*user = stub.get_user_rc == PAM_SUCCESS ? stub.user : NULL;
	return stub.get_user_rc;
}

const char *
pam_strerror(pam_handle_t *pamh, int errnum)
{
	(void)pamh;
	return errnum == PAM_SUCCESS ? "Success" : "some PAM error";
}

void
pam_vsyslog(const pam_handle_t *pamh, int priority, const char *fmt, va_list args)
{
	char line[2048];

	(void)pamh;
	(void)priority;
	vsnprintf(line, sizeof(line), fmt, args);
	append(stub_log, sizeof(stub_log), &stub_log_len, line);
	append(stub_log, sizeof(stub_log), &stub_log_len, "\n");
}

void
pam_syslog(const pam_handle_t *pamh, int priority, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	pam_vsyslog(pamh, priority, fmt, ap);
	va_end(ap);
}
