/*
 * libFuzzer: the whole pam_sm_authenticate against a fuzzed agent.
 *
 * Input: [conv0][conv1][opts][alloc/peer][more] then the bytes the "agent" sends. conv0/conv1
 * hold 2 bits per prompt (Enter, a code, garbage or a/t by turns, conversation failure); opts picks
 * mode (bits 0-1), qr (2), debug (3), connect() failing (4), service sudo instead of sshd
 * (5), user root instead of alice (6), PAM_SILENT (7); alloc/peer bits 0-2, if not 0, make
 * the module's n-th malloc/calloc fail, bits 3-4 pick what SO_PEERCRED says (0 the real
 * peer: this process, 1 uid 0, 2 a uid that is neither root nor the agentuser, 3 an error),
 * bits 5-7 what getpwnam_r says about alice (see fuzz_getpwnam_r; root is looked up for real);
 * more: bit 0 adds the option `lease`, bits 1-2 pick SSH_AUTH_INFO_0 (absent, a publickey
 * line, one byte over QR_MAX_AUTH_INFO, not UTF-8), bit 3 adds `nouserok`, bit 4
 * `failmode=open`, bits 5-6 how connect() fails when it does (ECONNREFUSED, ENOENT, EAGAIN: a
 * full backlog, or EINTR first and then ECONNREFUSED, or success if it does not fail), bit 7
 * types the user as "Alice" (NSS ignores case: the entry is alice's).
 * The module's socket()/connect()/getsockopt()/getpwnam_r()/malloc()/calloc() are renamed
 * by objcopy (Makefile) to the functions below, so no real agent, thread or timeout is
 * involved: the agent's bytes are queued on a socketpair, followed by EOF. The fuzz build
 * starts the getpwnam_r buffer small, so the ERANGE retries run too.
 *
 * Properties: PAM_SUCCESS only if the stream held a well-formed CHALLENGE first and a
 * VERDICT APPROVED later, or (only with `lease`) began with a VERDICT APPROVED; never with a
 * failed allocation or a failed user lookup; the BEGIN sent carries the lease tag only with
 * `lease` and sshd's SSH_AUTH_INFO_0 only then and only when it is within bounds and UTF-8, and
 * the account's name (alice) when the lookup found it, else the name as given; never from an
 * untrusted peer; a failed user lookup gives PAM_AUTH_ERR before connect(); an unreachable
 * agent gives PAM_AUTH_ERR and, over sshd outside mode=info, the message in one prompt, except
 * that with failmode=open an agent that is not there (ENOENT, ECONNREFUSED; not a full backlog)
 * gives PAM_IGNORE with nothing shown; PAM_IGNORE in no other case but nouserok with NO_DEVICE
 * as the answer to BEGIN, and then always; nothing but the expected codes.
 */
#define _GNU_SOURCE	/* struct ucred */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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
static int connect_fails;
static unsigned connect_mode, connect_calls;
static unsigned peer_mode, pw_mode;
enum { CONNECT_REFUSED, CONNECT_ENOENT, CONNECT_BUSY, CONNECT_EINTR_FIRST };
enum { PEER_REAL, PEER_ROOT, PEER_OTHER, PEER_ERROR };
enum { PW_FOUND, PW_NONE, PW_ENOENT, PW_EIO, PW_ERANGE, PW_HOME_1025, PW_HOME_1024, PW_HOME_BAD };

int fuzz_socket(int domain, int type, int protocol);
int fuzz_connect(int fd, const void *addr, socklen_t len);
int fuzz_getsockopt(int fd, int level, int name, void *val, socklen_t *len);
int fuzz_getpwnam_r(const char *name, struct passwd *pw, char *buf, size_t size,
    struct passwd **res);
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
	if (connect_mode == CONNECT_EINTR_FIRST && connect_calls++ == 0) {
		errno = EINTR;	/* a signal during the wait for room in the backlog */
		return -1;
	}
	connect_calls++;
	if (connect_fails) {
		errno = connect_mode == CONNECT_ENOENT ? ENOENT : connect_mode == CONNECT_BUSY ? EAGAIN :
		    ECONNREFUSED;
		return -1;
	}
	return 0;
}

int
fuzz_getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	struct ucred cr = { .pid = 1 };

	if (level != SOL_SOCKET || name != SO_PEERCRED || peer_mode == PEER_REAL)
		return getsockopt(fd, level, name, val, len);
	if (peer_mode == PEER_ERROR || *len < sizeof(cr)) {
		errno = EINVAL;
		return -1;
	}
	/* Never 0, never our own uid (the agentuser below). */
	cr.uid = peer_mode == PEER_ROOT ? 0 : getuid() + 1;
	memcpy(val, &cr, sizeof(cr));
	*len = sizeof(cr);
	return 0;
}

/* Simulated passwd entry for "alice", found whatever the case of the name asked for, as sssd
 * with case_sensitive=false does (fast, and every outcome); anything else for real. */
int
fuzz_getpwnam_r(const char *name, struct passwd *pw, char *buf, size_t size, struct passwd **res)
{
	static char home[1100];
	size_t hlen, need;

	*res = NULL;
	if (strcasecmp(name, "alice") != 0)
		return getpwnam_r(name, pw, buf, size, res);
	switch (pw_mode) {
	case PW_NONE: return 0;
	case PW_ENOENT: return ENOENT;
	case PW_EIO: return EIO;
	case PW_ERANGE: return ERANGE;
	case PW_HOME_1025:
	case PW_HOME_1024:
		hlen = pw_mode == PW_HOME_1025 ? 1025 : 1024;
		memset(home, 'h', hlen);
		home[0] = '/';
		home[hlen] = '\0';
		break;
	case PW_HOME_BAD:
		strcpy(home, "/home/al\xffice");
		break;
	default:
		strcpy(home, "/home/alice");
		break;
	}
	hlen = strlen(home);
	need = sizeof("alice") + 2 + hlen + 1 + sizeof("/bin/sh");
	if (size < need)
		return ERANGE;
	memset(pw, 0, sizeof(*pw));
	pw->pw_name = buf;
	memcpy(buf, "alice", sizeof("alice"));
	pw->pw_passwd = buf + sizeof("alice");
	memcpy(pw->pw_passwd, "x", 2);
	pw->pw_dir = pw->pw_passwd + 2;
	memcpy(pw->pw_dir, home, hlen + 1);
	pw->pw_shell = pw->pw_dir + hlen + 1;
	memcpy(pw->pw_shell, "/bin/sh", sizeof("/bin/sh"));
	pw->pw_gecos = pw->pw_shell + sizeof("/bin/sh") - 1;	/* "" */
	pw->pw_uid = 1000;
	pw->pw_gid = 1000;
	*res = pw;
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
	static const char *const a[] = { "", "1234-5678" };
	/* Garbage, or a re-render request (RENDER ascii / text), by turns. */
	static const char *const other[] = { "abc", "a", "t" };
	unsigned i = conv_i++;
	unsigned sel = (conv_bits >> (2 * (i % 8))) & 3;

	(void)style;
	(void)msg;
	if (sel == 3)
		return -1;
	*out = strdup(sel == 2 ? other[i % 3] : a[sel]);
	return *out == NULL ? -1 : 0;
}

/*
 * Did the stream start with a valid CHALLENGE and hold a valid VERDICT APPROVED later? With
 * `lease`, a VERDICT APPROVED straight after BEGIN (a lease) counts too.
 */
static int
approval_in(const uint8_t *b, size_t n, int lease)
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
		if (first && lease && m.type == QR_VERDICT && m.f[QR_VERDICT_RESULT].num == QR_APPROVED)
			return 1;
		if (!first && challenged && m.type == QR_VERDICT &&
		    m.f[QR_VERDICT_RESULT].num == QR_APPROVED)
			return 1;
		first = 0;
		off += used;
	}
	return 0;
}

/* Is the stream's first frame a valid VERDICT NO_DEVICE (the answer to BEGIN)? */
static int
no_device_first(const uint8_t *b, size_t n)
{
	static struct qr_parser p;
	struct qr_msg m;
	size_t used;

	frame_parser_init(&p);
	return frame_parser_feed(&p, b, n, &used, &m) == QR_FRAME_DONE && m.type == QR_VERDICT &&
	    m.f[QR_VERDICT_RESULT].num == QR_NO_DEVICE;
}

/*
 * What the module sent the agent, if anything: its BEGIN names `user`, has the lease tag
 * exactly with `lease`, and sshd's SSH_AUTH_INFO_0 exactly with `lease` and a usable value.
 * Returns whether a BEGIN was sent.
 */
static int
check_begin_sent(int fd, const char *user, int lease, int info_usable)
{
	static uint8_t sent[4 + QR_MAX_FRAME];
	static struct qr_parser p;
	struct qr_msg m;
	size_t got = 0, used;
	ssize_t r;

	while (got < sizeof(sent) && (r = recv(fd, sent + got, sizeof(sent) - got, MSG_DONTWAIT)) > 0)
		got += (size_t)r;
	if (got == 0)
		return 0;	/* nothing reached the agent (no connection, untrusted peer, no memory) */
	frame_parser_init(&p);
	if (frame_parser_feed(&p, sent, got, &used, &m) != QR_FRAME_DONE || m.type != QR_BEGIN)
		abort();	/* the module's first words are always a whole, valid BEGIN */
	if (m.f[QR_BEGIN_USER].len != strlen(user) || memcmp(m.f[QR_BEGIN_USER].val, user, strlen(user)) != 0)
		abort();
	if (m.f[QR_BEGIN_LEASE].present != lease)
		abort();
	if (m.f[QR_BEGIN_AUTH_INFO].present != (lease && info_usable))
		abort();
	return 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const modes[] = { "mode=auto", "mode=prompt", "mode=info", "mode=prompt" };
	static char agentuser[96];
	static char info_long[QR_MAX_AUTH_INFO + 2];
	static const char info_key[] = "publickey ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n";
	static const char info_bad[] = "publickey ssh-ed25519 \xff\xfe\n";
	const char *argv[11];
	int argc = 0, sv[2], rc, flags, sshd_prompt, lease, nouserok, failmode_open, user_root;
	int lookup_error, agent_down, begin_sent;
	unsigned info_mode;
	const char *begin_user;

	if (size < 5 || size > 5 + 4 * (4 + QR_MAX_FRAME))
		return 0;
	stub_reset();
	if (info_long[0] == '\0')
		memset(info_long, 'A', sizeof(info_long) - 1);
	lease = data[4] & 1;
	info_mode = (unsigned)(data[4] >> 1) & 3;
	stub.auth_info = info_mode == 1 ? info_key : info_mode == 2 ? info_long : info_mode == 3 ? info_bad : NULL;
	stub.answer_hook = answer;
	conv_bits = (unsigned)data[0] | (unsigned)data[1] << 8;
	conv_i = 0;
	alloc_fail_at = data[3] & 0x07;	/* the module makes only a few allocations */
	alloc_n = 0;
	alloc_failed = 0;
	connect_fails = (data[2] & 0x10) != 0;
	connect_mode = (unsigned)(data[4] >> 5) & 3;
	connect_calls = 0;
	peer_mode = (data[3] >> 3) & 3;
	pw_mode = (unsigned)data[3] >> 5;
	nouserok = (data[4] & 0x08) != 0;
	failmode_open = (data[4] & 0x10) != 0;
	stub.service = data[2] & 0x20 ? "sudo" : "sshd";
	user_root = (data[2] & 0x40) != 0;
	stub.user = user_root ? "root" : data[4] & 0x80 ? "Alice" : "alice";
	/* The name BEGIN must carry: the account's own when the lookup finds it. */
	begin_user = user_root ? "root" : pw_mode == PW_NONE || pw_mode == PW_ENOENT ? stub.user : "alice";
	lookup_error = !user_root && (pw_mode == PW_EIO || pw_mode == PW_ERANGE);
	/* Nobody there (ENOENT, ECONNREFUSED, also after an EINTR), not a full backlog. */
	agent_down = connect_fails && connect_mode != CONNECT_BUSY;
	flags = data[2] & 0x80 ? (int)PAM_SILENT : 0;
	sshd_prompt = !(data[2] & 0x20) && (data[2] & 3) != 2 && flags == 0;
	if (agentuser[0] == '\0') {
		/* Trust ourselves: the real peer of the socketpair is this process. */
		const struct passwd *me = getpwuid(getuid());

		if (me == NULL)
			abort();
		snprintf(agentuser, sizeof(agentuser), "agentuser=%s", me->pw_name);
	}
	argv[argc++] = "socket=/fuzz/agent.sock";
	argv[argc++] = modes[data[2] & 3];
	argv[argc++] = data[2] & 4 ? "qr=ascii" : "qr=utf8";
	if (data[2] & 8)
		argv[argc++] = "debug";
	argv[argc++] = "wait=1";
	argv[argc++] = agentuser;
	if (lease)
		argv[argc++] = "lease";
	if (nouserok)
		argv[argc++] = "nouserok";
	if (failmode_open)
		argv[argc++] = "failmode=open";

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		abort();
	/* Queue the agent's bytes, then EOF: the module never waits on a timer. */
	if (size > 5 && write(sv[1], data + 5, size - 5) != (ssize_t)(size - 5))
		abort();
	shutdown(sv[1], SHUT_WR);
	agent_fd = sv[0];

	rc = pam_sm_authenticate(stub_handle(), flags, argc, argv);

	if (getenv("QR_FUZZ_VERBOSE") != NULL)	/* to see what a seed does */
		fprintf(stderr, "rc=%d alloc_failed=%d\n%s%s", rc, alloc_failed, stub_transcript, stub_log);
	begin_sent = check_begin_sent(sv[1], begin_user, lease, info_mode == 1);
	close(sv[0]);
	close(sv[1]);
	agent_fd = -1;
	if (rc == PAM_SUCCESS && (alloc_failed || !approval_in(data + 5, size - 5, lease)))
		abort();
	if (rc == PAM_SUCCESS && (connect_fails || peer_mode >= PEER_OTHER || lookup_error))
		abort();
	/* A home that does not fit BEGIN (too long, not UTF-8) is refused, not cut. */
	if (rc == PAM_SUCCESS && !user_root && (pw_mode == PW_HOME_1025 || pw_mode == PW_HOME_BAD))
		abort();
	if (lookup_error && !alloc_failed) {
		/* NSS failed: refused before connect(), whatever nouserok and failmode say, with
		 * the one message shown as for an agent out of reach. */
		if (rc != PAM_AUTH_ERR || connect_calls != 0 || begin_sent || stub_n_infos != 0)
			abort();
		if (stub_n_prompts != sshd_prompt || stub_n_errors != (!sshd_prompt && flags == 0))
			abort();
	} else if (connect_fails && !alloc_failed) {
		/* Nothing reached the agent: no QR. Agent not there + failmode=open: PAM_IGNORE and
		 * nothing shown; else (a full backlog always) PAM_AUTH_ERR and the one message. */
		if (failmode_open && agent_down) {
			if (rc != PAM_IGNORE || stub_n_infos != 0 || stub_n_prompts != 0 || stub_n_errors != 0)
				abort();
		} else {
			if (rc != PAM_AUTH_ERR || stub_n_infos != 0)
				abort();
			if (stub_n_prompts != sshd_prompt || stub_n_errors != (!sshd_prompt && flags == 0))
				abort();
		}
	} else if (peer_mode >= PEER_OTHER && !alloc_failed) {
		if (rc != PAM_AUTH_ERR || stub_n_infos != 0 || stub_n_prompts != 0 || stub_n_errors != (flags == 0))
			abort();
	}
	/* nouserok: the answer NO_DEVICE to a BEGIN that was sent is PAM_IGNORE, always. */
	if (nouserok && begin_sent && no_device_first(data + 5, size - 5) && rc != PAM_IGNORE)
		abort();
	/* PAM_IGNORE in exactly the two documented cases. */
	if (rc == PAM_IGNORE && !(failmode_open && agent_down && !lookup_error) &&
	    !(nouserok && begin_sent && no_device_first(data + 5, size - 5)))
		abort();
	if (rc != PAM_SUCCESS && rc != PAM_AUTH_ERR && rc != PAM_CONV_ERR && rc != PAM_MAXTRIES &&
	    rc != PAM_BUF_ERR && rc != PAM_IGNORE)
		abort();	/* includes PAM_SERVICE_ERR */
	return 0;
}
