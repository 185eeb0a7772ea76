/*
 * libFuzzer: the whole pam_sm_authenticate against a fuzzed agent.
 *
 * Input: [conv0][conv1][opts][allocfail] then the bytes the "agent" sends. conv0/conv1
 * hold 2 bits per prompt (Enter, a code, garbage, conversation failure); opts picks
 * mode/qr/debug; allocfail, if not 0, makes the module's n-th malloc/calloc fail.
 * The module's socket()/connect()/malloc()/calloc() are renamed by objcopy (Makefile)
 * to the functions below, so no real agent, thread or timeout is involved: the agent's
 * bytes are queued on a socketpair, followed by EOF.
 *
 * Properties: PAM_SUCCESS only if the stream held a well-formed CHALLENGE first and a
 * VERDICT APPROVED later; never with a failed allocation; PAM_IGNORE never (no nouserok,
 * no failmode=open); nothing but the expected codes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <security/pam_appl.h>

#include "frame.h"
#include "test_stubs.h"

int pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc, const char **argv);

static int agent_fd = -1;
static unsigned conv_bits, conv_i;
static unsigned alloc_fail_at, alloc_n;
static int alloc_failed;

int fuzz_socket(int domain, int type, int protocol);
int fuzz_connect(int fd, const void *addr, socklen_t len);
void *fuzz_malloc(size_t n);
void *fuzz_calloc(size_t n, size_t m);

int
fuzz_socket(int domain, int type, int protocol)
{
	(void)domain;
	(void)type;
	(void)protocol;
	return dup(agent_fd);
}

int
fuzz_connect(int fd, const void *addr, socklen_t len)
{
	(void)fd;
	(void)addr;
	(void)len;
	return 0;
}

static int
fail_now(void)
{
	if (alloc_fail_at != 0 && ++alloc_n == alloc_fail_at) {
		alloc_failed = 1;
		return 1;
	}
	return 0;
}

void *
fuzz_malloc(size_t n)
{
	return fail_now() ? NULL : malloc(n);
}

void *
fuzz_calloc(size_t n, size_t m)
{
	return fail_now() ? NULL : calloc(n, m);
}

static int
answer(int style, const char *msg, char **out)
{
	static const char *const a[] = { "", "1234-5678", "abc" };
	unsigned sel = (conv_bits >> (2 * (conv_i++ % 8))) & 3;

	(void)style;
	(void)msg;
	if (sel == 3)
		return -1;
	*out = strdup(a[sel]);
	return *out == NULL ? -1 : 0;
}

/* Did the stream start with a valid CHALLENGE and hold a valid VERDICT APPROVED later? */
static int
approval_in(const uint8_t *b, size_t n)
{
	static struct qr_parser p;
	struct qr_msg m;
	size_t off = 0, used;
	int first = 1, challenged = 0;

	while (off < n) {
		frame_parser_init(&p);
		if (frame_parser_feed(&p, b + off, n - off, &used, &m) != QR_FRAME_DONE)
			return 0;
		if (first && m.type == QR_CHALLENGE)
			challenged = 1;
		if (!first && challenged && m.type == QR_VERDICT &&
		    m.f[QR_VERDICT_RESULT].num == QR_APPROVED)
			return 1;
		first = 0;
		off += used;
	}
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const modes[] = { "mode=auto", "mode=prompt", "mode=info", "mode=prompt" };
	const char *argv[6];
	int argc = 0, sv[2], rc;

	if (size < 4 || size > 4 + 4 * (4 + QR_MAX_FRAME))
		return 0;
	stub_reset();
	stub.answer_hook = answer;
	conv_bits = (unsigned)data[0] | (unsigned)data[1] << 8;
	conv_i = 0;
	alloc_fail_at = data[3] & 0x07;	/* the module makes only a few allocations */
	alloc_n = 0;
	alloc_failed = 0;
	argv[argc++] = "socket=/fuzz/agent.sock";
	argv[argc++] = modes[data[2] & 3];
	argv[argc++] = data[2] & 4 ? "qr=ascii" : "qr=utf8";
	if (data[2] & 8)
		argv[argc++] = "debug";
	argv[argc++] = "wait=1";

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		abort();
	/* Queue the agent's bytes, then EOF: the module never waits on a timer. */
	if (size > 4 && write(sv[1], data + 4, size - 4) != (ssize_t)(size - 4))
		abort();
	shutdown(sv[1], SHUT_WR);
	agent_fd = sv[0];

	rc = pam_sm_authenticate(stub_handle(), 0, argc, argv);

	if (getenv("QR_FUZZ_VERBOSE") != NULL)	/* to see what a seed does */
		fprintf(stderr, "rc=%d alloc_failed=%d\n%s%s", rc, alloc_failed, stub_transcript, stub_log);
	close(sv[0]);
	close(sv[1]);
	agent_fd = -1;
	if (rc == PAM_SUCCESS && (alloc_failed || !approval_in(data + 4, size - 4)))
		abort();
	if (rc != PAM_SUCCESS && rc != PAM_AUTH_ERR && rc != PAM_CONV_ERR && rc != PAM_MAXTRIES &&
	    rc != PAM_BUF_ERR)
		abort();	/* includes PAM_IGNORE and PAM_SERVICE_ERR */
	return 0;
}
