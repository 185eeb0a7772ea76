/*
 * The whole module, in process: dlopen() the real pam_qrauth.so (its libpam calls land on
 * test_stubs.c, exported with -rdynamic), drive pam_sm_authenticate with a scripted
 * conversation, and answer it from a fake agent thread on a temp Unix socket that replies
 * with scripted frames and asserts what the module sends. Prints TAP; exits 1 on failure.
 */
#define _GNU_SOURCE	/* setresuid */
#include <dlfcn.h>
#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <stdarg.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <security/pam_appl.h>

#include "agent.h"
#include "frame.h"
#include "test_stubs.h"

typedef int (*sm_fn)(pam_handle_t *, int, int, const char **);
static sm_fn sm_authenticate, sm_setcred;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int n_ok, n_fail;

#define CHECK(cond, ...) do { \
	int ok_ = (cond) ? 1 : 0; \
	pthread_mutex_lock(&lock); \
	if (ok_) { n_ok++; } else { n_fail++; printf("not ok - "); printf(__VA_ARGS__); \
		printf(" (%s:%d)\n", __FILE__, __LINE__); } \
	pthread_mutex_unlock(&lock); } while (0)

#define QR_TEXT "QR-LINE-1 \xe2\x96\x80\xe2\x96\x84\nQR-LINE-2\n"
#define PROMPT "Scan with qrauth, approve, then press Enter (or type the code from the app):"
#define INFO_PROMPT "Scan with qrauth and approve on your phone..."
#define PAYLOAD "QRA1:hostid:sid:SECRETNONCE"
#define CODE_TYPED "1234 5678"
#define CODE_DIGITS "12345678"

/* ---- the fake agent ---- */

enum op { OP_END = 0, OP_EXPECT, OP_SEND, OP_SEND_BYTEWISE, OP_STALL, OP_CLOSE, OP_ACCEPT };

struct step {
	enum op op;
	uint8_t type;				/* OP_EXPECT */
	void (*check)(const struct qr_msg *);	/* OP_EXPECT, optional */
	const uint8_t *bytes;			/* OP_SEND */
	size_t n;
	int ms;					/* OP_STALL */
};

static struct step script[24];
static int n_steps;
static struct qr_frame pool[24];
static int n_pool;
static char sock_dir[64], sock_path[108], sock_opt[128];
/* Not root: the fake agent runs as us, so trust our own user as the agentuser. */
static char self_opt[128];
static int listen_fd = -1;
static pthread_t agent_thread;
static int agent_running;

static void
step(struct step s)
{
	script[n_steps++] = s;
}

static void
expect(uint8_t type, void (*check)(const struct qr_msg *))
{
	step((struct step){ .op = OP_EXPECT, .type = type, .check = check });
}

static void
send_raw(const void *b, size_t n)
{
	step((struct step){ .op = OP_SEND, .bytes = b, .n = n });
}

static struct qr_frame *
new_frame(uint8_t type)
{
	struct qr_frame *fr = &pool[n_pool++];

	frame_begin(fr, type);
	return fr;
}

static void
send_frame(struct qr_frame *fr, int bytewise)
{
	if (frame_finish(fr) != 0)
		CHECK(0, "test bug: frame does not encode: %s", frame_strerror(fr->err));
	step((struct step){ .op = bytewise ? OP_SEND_BYTEWISE : OP_SEND, .bytes = fr->data, .n = fr->len });
}

static void
send_challenge(int mode)
{
	struct qr_frame *fr = new_frame(QR_CHALLENGE);

	frame_add_str(fr, QR_CHALLENGE_QR_TEXT, QR_TEXT);
	frame_add_str(fr, QR_CHALLENGE_PROMPT, mode == QR_MODE_INFO ? INFO_PROMPT : PROMPT);
	frame_add_u32(fr, QR_CHALLENGE_EXPIRES, 90);
	frame_add_u8(fr, QR_CHALLENGE_MODE, (uint8_t)mode);
	frame_add_str(fr, QR_CHALLENGE_PAYLOAD, PAYLOAD);
	send_frame(fr, 0);
}

/* tries < 0: no tries_left field; msg NULL: no message. */
static void
send_verdict(int result, const char *msg, int tries)
{
	struct qr_frame *fr = new_frame(QR_VERDICT);

	frame_add_u8(fr, QR_VERDICT_RESULT, (uint8_t)result);
	if (msg != NULL)
		frame_add_str(fr, QR_VERDICT_MESSAGE, msg);
	if (tries >= 0)
		frame_add_u8(fr, QR_VERDICT_TRIES_LEFT, (uint8_t)tries);
	send_frame(fr, 0);
}

static void
stall(int ms)
{
	step((struct step){ .op = OP_STALL, .ms = ms });
}

static void
hang_up(void)
{
	step((struct step){ .op = OP_CLOSE });
}

/* Take the module's next connection (after a hang_up: an agent restarted by systemd). */
static void
accept_again(void)
{
	step((struct step){ .op = OP_ACCEPT });
}

static void *
agent_main(void *arg)
{
	static struct qr_parser rx;
	struct pollfd pfd = { .fd = listen_fd, .events = POLLIN };
	struct qr_msg msg;
	int fd = -1;
	uint8_t b;

	(void)arg;
	if (poll(&pfd, 1, 5000) != 1 || (fd = accept(listen_fd, NULL, NULL)) < 0) {
		/* Fine when the script expects nothing (the module failed before connecting). */
		CHECK(n_steps == 0, "fake agent: the module never connected");
		return NULL;
	}
	for (int i = 0; i < n_steps && (fd >= 0 || script[i].op == OP_ACCEPT); i++) {
		struct step *s = &script[i];
		int rc;

		switch (s->op) {
		case OP_EXPECT:
			frame_parser_init(&rx);
			for (;;) {
				size_t used;

				if ((rc = read_full(fd, &b, 1, qr_now_ms() + 5000, NULL)) != QR_AGENT_OK)
					break;
				if ((rc = frame_parser_feed(&rx, &b, 1, &used, &msg)) != QR_FRAME_MORE)
					break;
			}
			CHECK(rc == QR_FRAME_DONE && msg.type == s->type,
			    "fake agent: expected frame type 0x%02x, got rc=%d type=0x%02x", s->type, rc,
			    rc == QR_FRAME_DONE ? msg.type : 0);
			if (rc == QR_FRAME_DONE && msg.type == s->type && s->check != NULL)
				s->check(&msg);
			if (rc != QR_FRAME_DONE) {
				close(fd);
				fd = -1;
			}
			break;
		case OP_SEND:
			(void)write_full(fd, s->bytes, s->n, qr_now_ms() + 5000);
			break;
		case OP_SEND_BYTEWISE:
			for (size_t k = 0; k < s->n; k++) {
				(void)write_full(fd, s->bytes + k, 1, qr_now_ms() + 5000);
				usleep(100);
			}
			break;
		case OP_STALL: {
			/* Sleep, but wake up if the module gives up and closes. */
			struct pollfd p = { .fd = fd, .events = POLLIN };

			(void)poll(&p, 1, s->ms);
			break;
		}
		case OP_CLOSE:
			close(fd);
			fd = -1;
			break;
		case OP_ACCEPT:
			if (fd >= 0)
				close(fd);
			fd = -1;
			if (poll(&pfd, 1, 5000) != 1 || (fd = accept(listen_fd, NULL, NULL)) < 0)
				CHECK(0, "fake agent: the module did not connect again");
			break;
		case OP_END:
			break;
		}
	}
	if (fd >= 0) {
		/* The module must hang up now, with nothing more to say. */
		int rc = read_full(fd, &b, 1, qr_now_ms() + 5000, NULL);

		CHECK(rc == QR_AGENT_E_CLOSED, "fake agent: module sent more or did not hang up (rc=%d)", rc);
		close(fd);
	}
	return NULL;
}

static void
agent_start(void)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };

	unlink(sock_path);
	strcpy(sun.sun_path, sock_path);
	listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&sun, sizeof(sun)) != 0 ||
	    listen(listen_fd, 4) != 0) {
		perror("fake agent socket");
		exit(2);
	}
	pthread_create(&agent_thread, NULL, agent_main, NULL);
	agent_running = 1;
}

static void
agent_join(void)
{
	if (agent_running)
		pthread_join(agent_thread, NULL);
	agent_running = 0;
	if (listen_fd >= 0)
		close(listen_fd);
	listen_fd = -1;
	unlink(sock_path);
}

/* ---- the passwd lookups the module makes ----
 * The module's getpwnam_r() binds to this one (exported with -rdynamic, as the PAM stubs are):
 * the real lookup, or one that ignores case and returns the account's own entry (sssd with
 * case_sensitive=false, winbind), or EIO for one name (a directory server out of reach). */
static int nss_casefold;
static const char *nss_eio_for;

int
getpwnam_r(const char *name, struct passwd *pw, char *buf, size_t size, struct passwd **res)
{
	static int (*real)(const char *, struct passwd *, char *, size_t, struct passwd **);
	char folded[256];
	size_t i;

	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "getpwnam_r");
	*res = NULL;
	if (nss_eio_for != NULL && strcmp(name, nss_eio_for) == 0)
		return EIO;
	if (!nss_casefold)
		return real(name, pw, buf, size, res);
	for (i = 0; name[i] != '\0' && i < sizeof(folded) - 1; i++)
		folded[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] - 'A' + 'a' : name[i]);
	folded[i] = '\0';
	return real(folded, pw, buf, size, res);
}

/* ---- running the module ---- */

static void
reset(void)
{
	stub_reset();
	memset(script, 0, sizeof(script));
	n_steps = 0;
	n_pool = 0;
	nss_casefold = 0;
	nss_eio_for = NULL;
}

static void
answers(int n, ...)
{
	va_list ap;

	va_start(ap, n);
	for (int i = 0; i < n; i++)
		stub.answers[stub.n_answers++] = va_arg(ap, const char *);
	va_end(ap);
}

static int64_t elapsed_ms;

/* Options as one space-separated string; "socket=<fake agent>" is added first. */
static int
auth_flags(int flags, const char *opts, int with_agent)
{
	char buf[1024], *save = NULL;
	const char *argv[32];
	int argc = 0, rc;
	int64_t t0;

	argv[argc++] = sock_opt;
	snprintf(buf, sizeof(buf), "%s", opts);
	for (char *t = strtok_r(buf, " ", &save); t != NULL; t = strtok_r(NULL, " ", &save))
		argv[argc++] = t;
	if (self_opt[0] != '\0')
		argv[argc++] = self_opt;	/* last: it wins */
	if (with_agent)
		agent_start();
	t0 = qr_now_ms();
	rc = sm_authenticate(stub_handle(), flags, argc, argv);
	elapsed_ms = qr_now_ms() - t0;
	agent_join();
	/* Never a secret in the logs or on screen. */
	CHECK(strstr(stub_log, "SECRETNONCE") == NULL, "payload nonce in the logs");
	CHECK(strstr(stub_transcript, "SECRETNONCE") == NULL, "payload nonce shown to the user");
	CHECK(strstr(stub_log, CODE_DIGITS) == NULL && strstr(stub_log, "1234 5678") == NULL &&
	    strstr(stub_log, "11111111") == NULL, "typed digits in the logs");
	return rc;
}

static int
auth(const char *opts)
{
	return auth_flags(0, opts, 1);
}

#define has(hay, needle) (strstr((hay), (needle)) != NULL)

static void
done(const char *name)
{
	static int last_fail;

	if (n_fail == last_fail) {
		printf("ok - %s\n", name);
	} else {
		printf("not ok - %s\n# transcript:\n%s# log:\n%s", name, stub_transcript, stub_log);
	}
	last_fail = n_fail;
}

/* ---- checks on what the module sends ---- */

static int
fstr(const struct qr_msg *m, int tag, const char *want)
{
	const struct qr_field *f = &m->f[tag];

	if (want == NULL)
		return !f->present;
	return f->present && f->len == strlen(want) && memcmp(f->val, want, f->len) == 0;
}

/* uid and home in BEGIN exactly when getpwnam() knows the user. */
static void
check_passwd(const struct qr_msg *m, const char *user)
{
	const struct passwd *pw = getpwnam(user);

	if (pw == NULL) {
		CHECK(!m->f[QR_BEGIN_UID].present && !m->f[QR_BEGIN_HOME].present,
		    "BEGIN for unknown user %s has neither uid nor home", user);
		return;
	}
	CHECK(m->f[QR_BEGIN_UID].present && m->f[QR_BEGIN_UID].num == pw->pw_uid,
	    "BEGIN uid of %s is %u (got %u)", user, (unsigned)pw->pw_uid, m->f[QR_BEGIN_UID].num);
	CHECK(fstr(m, QR_BEGIN_HOME, pw->pw_dir), "BEGIN home of %s is %s", user, pw->pw_dir);
}

static void
check_begin_root(const struct qr_msg *m)
{
	CHECK(fstr(m, QR_BEGIN_USER, "root"), "BEGIN user root");
	CHECK(m->f[QR_BEGIN_UID].present && m->f[QR_BEGIN_UID].num == 0, "BEGIN uid 0 for root");
	CHECK(m->f[QR_BEGIN_HOME].present && m->f[QR_BEGIN_HOME].len > 0 &&
	    m->f[QR_BEGIN_HOME].val[0] == '/', "BEGIN home for root");
	check_passwd(m, "root");
}

#define NO_SUCH_USER "qrauth-test-no-such-user"

static void
check_begin_unknown(const struct qr_msg *m)
{
	CHECK(fstr(m, QR_BEGIN_USER, NO_SUCH_USER), "BEGIN user " NO_SUCH_USER);
	CHECK(!m->f[QR_BEGIN_UID].present, "BEGIN for an unknown user has no uid");
	CHECK(!m->f[QR_BEGIN_HOME].present, "BEGIN for an unknown user has no home");
}

static void
check_begin_default(const struct qr_msg *m)
{
	CHECK(fstr(m, QR_BEGIN_USER, "alice"), "BEGIN user");
	CHECK(fstr(m, QR_BEGIN_RHOST, "203.0.113.7"), "BEGIN rhost");
	CHECK(fstr(m, QR_BEGIN_SERVICE, "sshd"), "BEGIN service");
	CHECK(fstr(m, QR_BEGIN_TTY, "ssh"), "BEGIN tty");
	CHECK(m->f[QR_BEGIN_MODE].present && m->f[QR_BEGIN_MODE].num == QR_MODE_AUTO, "BEGIN mode auto");
	CHECK(m->f[QR_BEGIN_QR].present && m->f[QR_BEGIN_QR].num == QR_QR_UTF8, "BEGIN qr utf8");
	CHECK(m->f[QR_BEGIN_TIMEOUT].present && m->f[QR_BEGIN_TIMEOUT].num == 90, "BEGIN timeout 90");
	CHECK(fstr(m, QR_BEGIN_AUTHFILE, NULL), "BEGIN without authfile");
	check_passwd(m, "alice");
}

static void
check_begin_custom(const struct qr_msg *m)
{
	CHECK(fstr(m, QR_BEGIN_USER, "bob"), "BEGIN user bob");
	CHECK(fstr(m, QR_BEGIN_RHOST, NULL), "BEGIN without rhost");
	CHECK(fstr(m, QR_BEGIN_SERVICE, "sudo"), "BEGIN service sudo");
	CHECK(fstr(m, QR_BEGIN_TTY, "/dev/pts/4"), "BEGIN tty");
	CHECK(m->f[QR_BEGIN_MODE].num == QR_MODE_INFO, "BEGIN mode info");
	CHECK(m->f[QR_BEGIN_QR].num == QR_QR_ASCII, "BEGIN qr ascii");
	CHECK(m->f[QR_BEGIN_TIMEOUT].num == 120, "BEGIN timeout 120");
	CHECK(fstr(m, QR_BEGIN_AUTHFILE, "/etc/qrauth/devices/%u"), "BEGIN authfile");
	check_passwd(m, "bob");
}

static void
check_wait_forever(const struct qr_msg *m)
{
	CHECK(!m->f[QR_WAIT_MAX_WAIT].present, "prompt-mode WAIT has no max_wait");
}

static void
check_wait_5s(const struct qr_msg *m)
{
	CHECK(m->f[QR_WAIT_MAX_WAIT].present && m->f[QR_WAIT_MAX_WAIT].num == 5000,
	    "info-mode WAIT max_wait=5000 (got %u)", m->f[QR_WAIT_MAX_WAIT].num);
}

static void
check_code(const struct qr_msg *m)
{
	CHECK(fstr(m, QR_CODE_DIGITS, CODE_DIGITS), "CODE digits without spaces");
}

static const char *wrong_codes[] = { "11111111", "22222222", "33333333" };
static int code_i;

static void
check_wrong_code(const struct qr_msg *m)
{
	CHECK(fstr(m, QR_CODE_DIGITS, wrong_codes[code_i]), "CODE digits #%d", code_i);
	code_i++;
}

/* ---- the cases ---- */

static void
t_approve_after_enter(void)
{
	reset();
	answers(1, "");
	expect(QR_BEGIN, check_begin_default);
	send_challenge(QR_MODE_PROMPT);
	expect(QR_WAIT, check_wait_forever);
	send_verdict(QR_APPROVED, NULL, -1);
	CHECK(auth("") == PAM_SUCCESS, "approve gives PAM_SUCCESS");
	CHECK(stub_n_prompts == 1 && stub_n_infos == 0, "one prompt, no info message");
	CHECK(has(stub_transcript, "PROMPT: " QR_TEXT PROMPT " \n"), "QR and prompt in ONE prompt");
	CHECK(has(stub_log, "user=alice") && has(stub_log, "result=approved how=online"), "logged");
	done("prompt mode: Enter, then the phone approves -> PAM_SUCCESS");
}

static void
t_begin_fields(void)
{
	reset();
	stub.user = "bob";
	stub.rhost = NULL;
	stub.service = "sudo";
	stub.tty = "/dev/pts/4";
	expect(QR_BEGIN, check_begin_custom);
	send_verdict(QR_DENIED, NULL, -1);	/* a verdict before a challenge is a bad reply */
	CHECK(auth("mode=info qr=ascii timeout=120 authfile=/etc/qrauth/devices/%u wait=7") ==
	    PAM_AUTH_ERR, "APPROVED-less early verdict fails");
	done("BEGIN carries user/rhost/service/tty/mode/qr/timeout/authfile from items and options");
}

static void
t_deny(void)
{
	reset();
	answers(1, "");
	expect(QR_BEGIN, NULL);
	send_challenge(QR_MODE_PROMPT);
	expect(QR_WAIT, NULL);
	send_verdict(QR_DENIED, NULL, -1);
	CHECK(auth("") == PAM_AUTH_ERR, "deny gives PAM_AUTH_ERR");
	CHECK(has(stub_transcript, "ERROR: Login denied on the phone."), "user told");
	CHECK(has(stub_log, "user=alice") && has(stub_log, "result=denied") &&
	    has(stub_log, "cause=\"phone denied\""), "denial logged");
	done("the phone denies -> PAM_AUTH_ERR with a message");
}

static void
t_expired(void)
{
	reset();
	answers(1, "");
	expect(QR_BEGIN, NULL);
	send_challenge(QR_MODE_PROMPT);
	expect(QR_WAIT, NULL);
	send_verdict(QR_EXPIRED, NULL, -1);
	CHECK(auth("") == PAM_AUTH_ERR, "expired gives PAM_AUTH_ERR");
	CHECK(has(stub_transcript, "ERROR: The QR code expired. Try again."), "user told");
	done("the session expires -> PAM_AUTH_ERR");
}

static void
t_code_right(void)
{
	reset();
	answers(1, CODE_TYPED);
	expect(QR_BEGIN, NULL);
	send_challenge(QR_MODE_PROMPT);
	expect(QR_CODE, check_code);
	send_verdict(QR_APPROVED, NULL, -1);
	CHECK(auth("") == PAM_SUCCESS, "right code gives PAM_SUCCESS");
	CHECK(has(stub_log, "result=approved how=code"), "logged how=code");
	done("prompt mode: the right offline code -> PAM_SUCCESS");
}

static void
t_code_wrong_three_times(void)
{
	reset();
	code_i = 0;
	answers(3, "1111-1111", "22222222", " 3333 3333 ");
	expect(QR_BEGIN, NULL);
	send_challenge(QR_MODE_PROMPT);
	expect(QR_CODE, check_wrong_code);
	send_verdict(QR_CODE_WRONG, "wrong code", 2);
	expect(QR_CODE, check_wrong_code);
	send_verdict(QR_CODE_WRONG, "wrong code", 1);
	expect(QR_CODE, check_wrong_code);
	send_verdict(QR_LOCKED, NULL, 0);
	CHECK(auth("") == PAM_AUTH_ERR, "locked gives PAM_AUTH_ERR");
	CHECK(stub_n_prompts == 3, "three prompts");
	CHECK(has(stub_transcript, "PROMPT: Wrong code, 2 tries left. Type the code, or press Enter "
	    "to wait for approval: \n"), "second prompt says 2 tries left, without the QR");
	CHECK(has(stub_transcript, "PROMPT: Wrong code, 1 try left."), "third prompt says 1 try");
	CHECK(has(stub_transcript, "ERROR: Too many wrong codes."), "user told");
	CHECK(has(stub_log, "result=locked"), "logged");
	{
		const char *first = strstr(stub_transcript, "QR-LINE-1");

		CHECK(first != NULL && strstr(first + 1, "QR-LINE-1") == NULL, "QR shown once");
	}
	done("three wrong codes -> LOCKED -> PAM_AUTH_ERR");
}

static void
t_code_wrong_then_enter(void)
{
	reset();
	answers(2, "11111111", "");
	expect(QR_BEGIN, NULL);
	send_challenge(QR_MODE_PROMPT);
	expect(QR_CODE, NULL);
	send_verdict(QR_CODE_WRONG, NULL, -1);
	expect(QR_WAIT, check_wait_forever);
	send_verdict(QR_APPROVED, NULL, -1);
	CHECK(auth("") == PAM_SUCCESS, "approve after a wrong code");
	CHECK(has(stub_transcript, "PROMPT: Wrong code. Type the code"), "no tries_left: plain text");
	done("a wrong code, then Enter and the phone approves -> PAM_SUCCESS");
}

static void
t_no_device(void)
{
	reset();
	expect(QR_BEGIN, NULL);
	send_verdict(QR_NO_DEVICE, NULL, -1);
	CHECK(auth("") == PAM_AUTH_ERR, "no device gives PAM_AUTH_ERR");
	CHECK(has(stub_transcript, "ERROR: qrauth: no phone is enrolled for user alice; run 'qrauth enroll'"),
	    "user told");
	CHECK(stub_n_prompts == 0, "no prompt");
	done("no enrolled device -> PAM_AUTH_ERR with a clear message");

	reset();
	expect(QR_BEGIN, NULL);
	send_verdict(QR_NO_DEVICE, NULL, -1);
	CHECK(auth("nouserok") == PAM_IGNORE, "nouserok gives PAM_IGNORE");
	CHECK(stub_n_errors == 0, "no error shown");
	done("no enrolled device with nouserok -> PAM_IGNORE");
}

#define AUTH_INFO "publickey ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHdLi4pmxFSTvV7Ki2oqHFKsgE2yXtlVuXEEKzUFEd+T\n"

static void
check_begin_lease(const struct qr_msg *m)
{
	CHECK(m->f[QR_BEGIN_LEASE].present && m->f[QR_BEGIN_LEASE].num == 1, "BEGIN lease=1");
	CHECK(fstr(m, QR_BEGIN_AUTH_INFO, AUTH_INFO), "BEGIN carries SSH_AUTH_INFO_0 as sshd set it");
}

static void
check_begin_no_lease(const struct qr_msg *m)
{
	CHECK(!m->f[QR_BEGIN_LEASE].present, "BEGIN without lease");
	CHECK(!m->f[QR_BEGIN_AUTH_INFO].present, "BEGIN without the auth info when leases are off");
}

static void
check_begin_lease_no_info(const struct qr_msg *m)
{
	CHECK(m->f[QR_BEGIN_LEASE].present, "BEGIN lease=1");
	CHECK(!m->f[QR_BEGIN_AUTH_INFO].present, "an unusable SSH_AUTH_INFO_0 is not sent");
}

static void
check_begin_uv(const struct qr_msg *m)
{
	CHECK(m->f[QR_BEGIN_UV].present && m->f[QR_BEGIN_UV].num == 1, "BEGIN uv=1");
}

static void
check_begin_no_uv(const struct qr_msg *m)
{
	CHECK(!m->f[QR_BEGIN_UV].present, "BEGIN without uv");
}

static void
t_uv_required(void)
{
	reset();
	expect(QR_BEGIN, check_begin_uv);
	send_verdict(QR_NO_DEVICE, NULL, -1);
	CHECK(auth("uv=required") == PAM_AUTH_ERR, "uv=required is accepted");
	done("uv=required: BEGIN carries uv=1");

	reset();
	expect(QR_BEGIN, check_begin_no_uv);
	send_verdict(QR_NO_DEVICE, NULL, -1);
	CHECK(auth("") == PAM_AUTH_ERR, "no uv option");
	done("no uv option: BEGIN without uv");
}

static void
t_lease(void)
{
	static char big[QR_MAX_AUTH_INFO + 2];

	reset();
	stub.auth_info = AUTH_INFO;
	expect(QR_BEGIN, check_begin_lease);
	send_verdict(QR_APPROVED, "approved by lease from Pixel until 14:05", -1);
	CHECK(auth("lease") == PAM_SUCCESS, "a lease verdict right after BEGIN is success with `lease`");
	CHECK(has(stub_transcript, "INFO: approved by lease from Pixel until 14:05"), "user told");
	CHECK(stub_n_prompts == 0, "no prompt");
	CHECK(has(stub_log, "how=lease"), "logged how=lease");
	done("lease: APPROVED at BEGIN -> PAM_SUCCESS, message shown, no QR");

	reset();
	stub.auth_info = AUTH_INFO;
	expect(QR_BEGIN, check_begin_no_lease);
	send_verdict(QR_APPROVED, "approved by lease", -1);
	CHECK(auth("") == PAM_AUTH_ERR, "without `lease` an APPROVED before a challenge is refused");
	done("no lease option: APPROVED before CHALLENGE is a bad reply");

	memset(big, 'a', sizeof(big) - 1);
	reset();
	stub.auth_info = big;
	expect(QR_BEGIN, check_begin_lease_no_info);
	send_verdict(QR_NO_DEVICE, NULL, -1);
	CHECK(auth("lease") == PAM_AUTH_ERR, "oversized SSH_AUTH_INFO_0: login goes on without it");
	CHECK(has(stub_log, "SSH_AUTH_INFO_0 longer than"), "oversized auth info logged");
	done("lease: oversized SSH_AUTH_INFO_0 is left out and logged");

	reset();
	stub.auth_info = "publickey ssh-ed25519 \xff\xfe\n";
	expect(QR_BEGIN, check_begin_lease_no_info);
	send_verdict(QR_NO_DEVICE, NULL, -1);
	CHECK(auth("lease") == PAM_AUTH_ERR, "non-UTF-8 SSH_AUTH_INFO_0: login goes on without it");
	CHECK(has(stub_log, "not UTF-8"), "bad auth info logged");
	done("lease: non-UTF-8 SSH_AUTH_INFO_0 is left out and logged");

	reset();
	expect(QR_BEGIN, check_begin_lease_no_info);
	send_verdict(QR_NO_DEVICE, NULL, -1);
	CHECK(auth("lease") == PAM_AUTH_ERR, "no SSH_AUTH_INFO_0 at all");
	CHECK(has(stub_log, "lease=none"), "missing auth info logged");
	done("lease: no SSH_AUTH_INFO_0 (sudo, keyboard-interactive only) is logged");
}

static void
t_error_verdict(void)
{
	reset();
	expect(QR_BEGIN, NULL);
	send_verdict(QR_ERROR, "devices file /home/alice/.config/qrauth/devices is group-writable", -1);
	CHECK(auth("") == PAM_AUTH_ERR, "ERROR gives PAM_AUTH_ERR");
	CHECK(has(stub_transcript, "ERROR: qrauth: devices file /home/alice/.config/qrauth/devices is "
	    "group-writable"), "agent's message shown");
	CHECK(has(stub_log, "result=error") && has(stub_log, "group-writable"), "logged");
	done("ERROR verdict -> PAM_AUTH_ERR with the agent's message");
}

#define UNREACHABLE "qrauth: the login approval service is not running on this host; ask the " \
	"administrator."

static void
t_unreachable(void)
{
	char opt[160];

	reset();
	stub.service = "sudo";
	snprintf(opt, sizeof(opt), "socket=%s/nobody-here.sock", sock_dir);
	CHECK(auth_flags(0, opt, 0) == PAM_AUTH_ERR, "unreachable gives PAM_AUTH_ERR");
	CHECK(has(stub_transcript, "ERROR: " UNREACHABLE "\n"), "user told");
	CHECK(stub_n_errors == 1 && stub_n_prompts == 0, "an error message, no prompt");
	CHECK(has(stub_log, "user=alice") && has(stub_log, "cause=\"agent unreachable\""), "logged");
	done("agent unreachable, sudo -> PAM_AUTH_ERR with an error message");

	/* sshd < 10.3 shows messages only with a prompt: over sshd the message is a prompt. */
	static const char *sshd_like[] = { "sshd", "sshd-x", "sshd_qrauth" };
	for (size_t i = 0; i < sizeof(sshd_like) / sizeof(sshd_like[0]); i++) {
		char name[128];

		reset();
		stub.service = sshd_like[i];
		answers(1, "ignored answer");
		CHECK(auth_flags(0, opt, 0) == PAM_AUTH_ERR, "%s: unreachable gives PAM_AUTH_ERR",
		    sshd_like[i]);
		CHECK(has(stub_transcript, "PROMPT: " UNREACHABLE " Press Enter.\n"), "%s: prompt shown",
		    sshd_like[i]);
		CHECK(stub_n_prompts == 1 && stub_n_errors == 0 && stub_n_asked == 1,
		    "%s: one prompt, no error message", sshd_like[i]);
		snprintf(name, sizeof(name), "agent unreachable, service %s -> the message in a prompt, "
		    "PAM_AUTH_ERR", sshd_like[i]);
		done(name);
	}

	reset();
	stub.service = "sshd-x";	/* no answers: the conversation fails, which changes nothing */
	CHECK(auth_flags(0, opt, 0) == PAM_AUTH_ERR, "prompt fails: still PAM_AUTH_ERR");
	CHECK(stub_n_prompts == 1, "prompted once");
	done("agent unreachable over sshd, the prompt's conversation fails -> PAM_AUTH_ERR");

	reset();
	stub.service = "sshd-x";
	CHECK(auth_flags((int)PAM_SILENT, opt, 0) == PAM_AUTH_ERR, "silent: PAM_AUTH_ERR");
	CHECK(stub_n_prompts == 0 && stub_n_errors == 0, "PAM_SILENT: no prompt, no message");
	done("agent unreachable over sshd with PAM_SILENT -> nothing shown, PAM_AUTH_ERR");

	reset();
	stub.service = "sshd-x";
	snprintf(opt, sizeof(opt), "socket=%s/nobody-here.sock mode=info", sock_dir);
	CHECK(auth_flags(0, opt, 0) == PAM_AUTH_ERR, "mode=info: PAM_AUTH_ERR");
	CHECK(stub_n_prompts == 0 && has(stub_transcript, "ERROR: " UNREACHABLE "\n"),
	    "mode=info: an error message, no prompt");
	done("agent unreachable over sshd with mode=info -> error message (sshd >= 10.3 shows it)");

	reset();
	stub.service = "sshdx";
	snprintf(opt, sizeof(opt), "socket=%s/nobody-here.sock mode=prompt", sock_dir);
	CHECK(auth_flags(0, opt, 0) == PAM_AUTH_ERR, "sshdx: PAM_AUTH_ERR");
	CHECK(stub_n_prompts == 0 && stub_n_errors == 1, "sshdx is not sshd: an error message");
	done("agent unreachable, service sshdx (not sshd-like) -> error message");

	reset();
	snprintf(opt, sizeof(opt), "socket=%s/nobody-here.sock failmode=open", sock_dir);
	CHECK(auth_flags(0, opt, 0) == PAM_IGNORE, "failmode=open gives PAM_IGNORE");
	CHECK(stub_n_errors == 0 && stub_n_prompts == 0 && has(stub_log, "result=ignored"),
	    "logged, not shown");
	done("agent unreachable with failmode=open -> PAM_IGNORE");

	/* failmode=open is only about reaching the agent: a denial is still a denial. */
	reset();
	answers(1, "");
	expect(QR_BEGIN, NULL);
	send_challenge(QR_MODE_PROMPT);
	expect(QR_WAIT, NULL);
	send_verdict(QR_DENIED, NULL, -1);
	CHECK(auth("failmode=open") == PAM_AUTH_ERR, "deny with failmode=open");
	done("failmode=open does not soften a denial");
}

static void
t_passwd(void)
{
	reset();
	stub.user = "root";
	expect(QR_BEGIN, check_begin_root);
	send_verdict(QR_NO_DEVICE, NULL, -1);
	CHECK(auth("debug") == PAM_AUTH_ERR, "root without a phone");
	CHECK(has(stub_log, "passwd uid=0"), "debug logs the uid");
	done("BEGIN for an existing user (root) carries its uid and home");

	reset();
	CHECK(getpwnam(NO_SUCH_USER) == NULL, "test bug: " NO_SUCH_USER " exists");
	stub.user = NO_SUCH_USER;
	expect(QR_BEGIN, check_begin_unknown);
	send_verdict(QR_NO_DEVICE, NULL, -1);	/* what the agent answers for an unknown user */
	CHECK(auth("debug") == PAM_AUTH_ERR, "unknown user");
	CHECK(has(stub_transcript, "ERROR: qrauth: no phone is enrolled for user " NO_SUCH_USER "; "),
	    "the same message as for a user without a phone");
	CHECK(has(stub_log, "passwd=none") && !has(stub_log, "passwd=error"), "debug logs no entry");
	done("BEGIN for a user that does not exist has neither uid nor home -> NO_DEVICE, PAM_AUTH_ERR");
}

/* ---- a fake agent in a child process, listening as another uid (SO_PEERCRED) ---- */

static char peer_dir[64], peer_path[108];

/* Fork a child that drops to uid/gid, then creates the listening socket and runs the script. */
static pid_t
agent_fork_as(uid_t uid, gid_t gid)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int ready[2];
	pid_t pid;
	char c;

	unlink(peer_path);
	if (pipe(ready) != 0) {
		perror("pipe");
		exit(2);
	}
	fflush(stdout);	/* or the child prints the parent's buffered lines again */
	if ((pid = fork()) < 0) {
		perror("fork");
		exit(2);
	}
	if (pid == 0) {
		int fails = n_fail;

		close(ready[0]);
		if (setgroups(0, NULL) != 0 || setresgid(gid, gid, gid) != 0 ||
		    setresuid(uid, uid, uid) != 0 || getuid() != uid)
			_exit(3);
		strcpy(sun.sun_path, peer_path);
		listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&sun, sizeof(sun)) != 0 ||
		    listen(listen_fd, 4) != 0)
			_exit(4);
		if (write(ready[1], "R", 1) != 1)
			_exit(5);
		close(ready[1]);
		agent_main(NULL);
		close(listen_fd);
		fflush(stdout);
		_exit(n_fail == fails ? 0 : 1);
	}
	close(ready[1]);
	CHECK(read(ready[0], &c, 1) == 1, "child agent did not start");
	close(ready[0]);
	return pid;
}

static void
agent_reap(pid_t pid)
{
	int status = 0;

	CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "child agent failed (status 0x%x)", (unsigned)status);
	unlink(peer_path);
}

static void
t_peercred(void)
{
	const struct passwd *nobody;
	uid_t uid;
	gid_t gid;
	char opt[256], cause[160];
	pid_t pid;

	if (geteuid() != 0) {
		printf("ok # skip not root (SO_PEERCRED: a listener of another uid needs setresuid)\n");
		return;
	}
	nobody = getpwnam("nobody");
	uid = nobody != NULL ? nobody->pw_uid : 65534;
	gid = nobody != NULL ? nobody->pw_gid : 65534;

	reset();
	pid = agent_fork_as(uid, gid);	/* nothing may arrive: the module checks before BEGIN */
	snprintf(opt, sizeof(opt), "socket=%s", peer_path);
	CHECK(auth_flags(0, opt, 0) == PAM_AUTH_ERR, "listener of uid %u refused", (unsigned)uid);
	agent_reap(pid);
	snprintf(cause, sizeof(cause), "result=error cause=\"agent socket is served by uid %u, not "
	    "root or qrauth\"", (unsigned)uid);
	CHECK(has(stub_log, cause), "logged: %s", cause);
	CHECK(has(stub_transcript, "ERROR: qrauth: the login approval service failed a security "
	    "check; ask the administrator.\n"), "user told");
	done("agent socket served by another uid -> PAM_AUTH_ERR before BEGIN, logged");

	reset();
	pid = agent_fork_as(uid, gid);
	snprintf(opt, sizeof(opt), "socket=%s failmode=open nouserok", peer_path);
	CHECK(auth_flags(0, opt, 0) == PAM_AUTH_ERR, "failmode=open does not make it PAM_IGNORE");
	agent_reap(pid);
	CHECK(has(stub_log, cause), "logged");
	done("a wrong listener with failmode=open is still PAM_AUTH_ERR (not 'agent down')");

	reset();
	pid = agent_fork_as(uid, gid);
	snprintf(opt, sizeof(opt), "socket=%s agentuser=" NO_SUCH_USER, peer_path);
	CHECK(auth_flags(0, opt, 0) == PAM_AUTH_ERR, "agentuser unknown: only root");
	agent_reap(pid);
	CHECK(has(stub_log, "not root or " NO_SUCH_USER "\""), "logged with the agentuser's name");
	done("agentuser that does not exist: only a root listener is accepted");

	if (nobody == NULL) {
		printf("ok # skip no user 'nobody'\n");
	} else {
		reset();
		answers(1, "");
		expect(QR_BEGIN, check_begin_default);
		send_challenge(QR_MODE_PROMPT);
		expect(QR_WAIT, check_wait_forever);
		send_verdict(QR_APPROVED, NULL, -1);
		pid = agent_fork_as(uid, gid);
		snprintf(opt, sizeof(opt), "socket=%s agentuser=nobody", peer_path);
		CHECK(auth_flags(0, opt, 0) == PAM_SUCCESS, "agentuser=nobody accepted");
		agent_reap(pid);
		CHECK(!has(stub_log, "served by uid"), "no complaint");
		done("agent socket served by the agentuser (agentuser=nobody) -> accepted, PAM_SUCCESS");
	}

	/* A root listener is always accepted, whatever agentuser names. */
	reset();
	answers(1, "");
	expect(QR_BEGIN, NULL);
	send_challenge(QR_MODE_PROMPT);
	expect(QR_WAIT, NULL);
	send_verdict(QR_APPROVED, NULL, -1);
	CHECK(auth("agentuser=" NO_SUCH_USER) == PAM_SUCCESS, "root listener");
	done("agent socket served by root -> accepted with any agentuser");
}

static void
t_bad_replies(void)
{
	static const uint8_t garbage[] = "HTTP/1.1 400 Bad Request\r\n\r\n";
	static const uint8_t oversized[] = { 0, 0, 0x40, 0x01, QR_VERDICT, 1, 0, 1, 0 };
	static const uint8_t half[] = { 0, 0, 0, 5, QR_VERDICT, 1, 0 };
	static const uint8_t no_result[] = { 0, 0, 0, 1, QR_VERDICT };
	static const uint8_t bad_result[] = { 0, 0, 0, 5, QR_VERDICT, 1, 0, 1, 9 };
	static const uint8_t begin_back[] = { 0, 0, 0, 9, QR_BEGIN, 1, 0, 1, 'u', 3, 0, 1, 's' };
	static const struct { const char *name; const uint8_t *b; size_t n; } cases[] = {
		{ "garbage", garbage, sizeof(garbage) - 1 },
		{ "an oversized frame header", oversized, sizeof(oversized) },
		{ "a VERDICT without result", no_result, sizeof(no_result) },
		{ "a VERDICT with result 9", bad_result, sizeof(bad_result) },
		{ "a frame of a module->agent type", begin_back, sizeof(begin_back) },
	};
	char name[128];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		reset();
		expect(QR_BEGIN, NULL);
		send_raw(cases[i].b, cases[i].n);
		hang_up();
		CHECK(auth("") == PAM_AUTH_ERR, "%s", cases[i].name);
		CHECK(stub_n_errors == 1 && has(stub_log, "result=error"), "%s: told and logged",
		    cases[i].name);
		snprintf(name, sizeof(name), "agent replies with %s -> PAM_AUTH_ERR", cases[i].name);
		done(name);
	}

	/* The same after a valid challenge, in answer to WAIT. */
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		reset();
		answers(1, "");
		expect(QR_BEGIN, NULL);
		send_challenge(QR_MODE_PROMPT);
		expect(QR_WAIT, NULL);
		send_raw(cases[i].b, cases[i].n);
		hang_up();
		CHECK(auth("") == PAM_AUTH_ERR, "%s after WAIT", cases[i].name);
		snprintf(name, sizeof(name), "agent answers WAIT with %s -> PAM_AUTH_ERR", cases[i].name);
		done(name);
	}

	reset();
	expect(QR_BEGIN, NULL);
	send_raw(half, sizeof(half));
	hang_up();
	CHECK(auth("") == PAM_AUTH_ERR, "closing mid-frame");
	CHECK(has(stub_transcript, "ERROR: qrauth: lost contact"), "user told");
	done("agent closes mid-frame -> PAM_AUTH_ERR");

	reset();
	expect(QR_BEGIN, NULL);
	hang_up();
	accept_again();
	expect(QR_BEGIN, NULL);
	hang_up();
	CHECK(auth("") == PAM_AUTH_ERR, "closing without a reply, twice");
	CHECK(has(stub_transcript, "ERROR: qrauth: lost contact"), "user told once it gave up");
	CHECK(has(stub_log, "action=retry"), "the retry is logged");
	done("agent closes without a reply twice -> one retry, then PAM_AUTH_ERR");

	/* The same when the stopping agent closes without even reading the BEGIN: the kernel
	 * resets the connection (POLLERR, ECONNRESET), which is a close, not an i/o error. */
	reset();
	answers(1, "");
	stall(500);	/* returns as soon as the BEGIN is readable; it is left unread */
	hang_up();
	accept_again();
	expect(QR_BEGIN, NULL);
	send_challenge(QR_MODE_PROMPT);
	expect(QR_WAIT, NULL);
	send_verdict(QR_APPROVED, NULL, -1);
	CHECK(auth("") == PAM_SUCCESS, "approved after a reset and the retry");
	CHECK(has(stub_log, "action=retry"), "the reset is taken as a close and retried");
	done("agent resets the connection with the BEGIN unread -> BEGIN once more, approved");

	/* systemctl restart with this login in the socket's backlog: the old agent accepted it and
	 * closed it unanswered; the next agent answers the BEGIN sent again. */
	reset();
	answers(1, "");
	expect(QR_BEGIN, NULL);
	hang_up();
	accept_again();
	expect(QR_BEGIN, NULL);
	send_challenge(QR_MODE_PROMPT);
	expect(QR_WAIT, NULL);
	send_verdict(QR_APPROVED, NULL, -1);
	CHECK(auth("") == PAM_SUCCESS, "approved after the retry");
	CHECK(!has(stub_transcript, "lost contact"), "nothing about the lost connection shown");
	done("agent restarting closes the first connection unanswered -> BEGIN once more, approved");

	reset();
	answers(1, "");
	expect(QR_BEGIN, NULL);
	send_challenge(QR_MODE_PROMPT);
	hang_up();	/* the module's WAIT meets a closed socket: EPIPE, and no SIGPIPE */
	CHECK(auth("") == PAM_AUTH_ERR, "agent gone before WAIT");
	done("agent gone before WAIT -> PAM_AUTH_ERR, no SIGPIPE");

	reset();
	expect(QR_BEGIN, NULL);
	send_raw(half, sizeof(half));
	stall(8000);
	CHECK(auth("timeout=1") == PAM_AUTH_ERR, "stalled mid-frame");
	CHECK(elapsed_ms < 4500, "gave up in time (%lld ms)", (long long)elapsed_ms);
	done("agent stalls mid-frame -> PAM_AUTH_ERR within timeout + grace");

	reset();
	answers(1, "");
	expect(QR_BEGIN, NULL);
	send_challenge(QR_MODE_PROMPT);
	expect(QR_WAIT, NULL);
	stall(8000);
	CHECK(auth("timeout=1") == PAM_AUTH_ERR, "stalled WAIT");
	CHECK(elapsed_ms < 4500, "gave up in time (%lld ms)", (long long)elapsed_ms);
	CHECK(has(stub_transcript, "ERROR: The QR code expired."), "told it expired");
	done("agent never answers WAIT -> PAM_AUTH_ERR at the login timeout");

	reset();
	expect(QR_BEGIN, NULL);
	send_verdict(QR_APPROVED, NULL, -1);
	CHECK(auth("") == PAM_AUTH_ERR, "APPROVED before any challenge");
	done("APPROVED in answer to BEGIN is refused -> PAM_AUTH_ERR");

	reset();
	answers(1, "");
	expect(QR_BEGIN, NULL);
	send_challenge(QR_MODE_PROMPT);
	expect(QR_WAIT, NULL);
	send_verdict(QR_CODE_WRONG, NULL, 2);
	CHECK(auth("") == PAM_AUTH_ERR, "CODE_WRONG in answer to WAIT");
	done("CODE_WRONG in answer to WAIT -> PAM_AUTH_ERR");

	reset();
	answers(1, "12345678");
	expect(QR_BEGIN, NULL);
	send_challenge(QR_MODE_PROMPT);
	expect(QR_CODE, NULL);
	send_verdict(QR_CODE_WRONG, NULL, 0);
	CHECK(auth("") == PAM_AUTH_ERR, "CODE_WRONG with 0 tries left");
	done("CODE_WRONG with tries_left 0 ends the login -> PAM_AUTH_ERR");

	reset();
	expect(QR_BEGIN, NULL);
	send_challenge(0);	/* mode 0 is not a valid effective mode */
	CHECK(auth("") == PAM_AUTH_ERR, "challenge mode 0");
	CHECK(stub_n_prompts == 0, "nothing asked");
	done("CHALLENGE with mode 0 -> PAM_AUTH_ERR");
}

static void
t_options(void)
{
	static const char *bad[] = {
		"frobnicate", "timeout=0", "timeout=3601", "timeout=-5", "timeout=9x", "timeout=",
		"timeout= 5", "wait=0", "wait=99999999999999999999", "mode=fast", "qr=png",
		"failmode=maybe", "socket=relative.sock", "socket=", "authfile=", "debug=1",
		"nouserok=yes", "agentuser=", "agentuser=a:b", "agentuser=-x", "agentuser=a/b",
		"agentuser=a\"b", "agentuser=\xc3\xa9", "uv=", "uv=preferred", "uv=off", "uv=REQUIRED",
		"agentuser=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "socket=/" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	};
	char name[300];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		reset();
		CHECK(auth_flags(0, bad[i], 0) == PAM_SERVICE_ERR, "option '%s'", bad[i]);
		CHECK(has(stub_log, "result=config_error"), "option '%s' logged", bad[i]);
		snprintf(name, sizeof(name), "option '%.40s' -> PAM_SERVICE_ERR, logged", bad[i]);
		done(name);
	}

	reset();
	answers(1, "");
	expect(QR_BEGIN, NULL);
	send_challenge(QR_MODE_PROMPT);
	expect(QR_WAIT, NULL);
	send_verdict(QR_APPROVED, NULL, -1);
	CHECK(auth("debug timeout=3600 wait=3600 mode=prompt qr=utf8 failmode=secure nouserok "
	    "authfile=/etc/qrauth/devices/%u agentuser=qr_auth-1.x@EXAMPLE$") == PAM_SUCCESS,
	    "every valid option");
	CHECK(has(stub_log, "config socket="), "debug logs the config");
	done("every valid option is accepted");

	reset();
	answers(1, "");
	expect(QR_BEGIN, NULL);
	send_challenge(QR_MODE_PROMPT);
	expect(QR_WAIT, NULL);
	send_verdict(QR_APPROVED, NULL, -1);
	CHECK(auth("") == PAM_SUCCESS, "no debug");
	CHECK(!has(stub_log, "config socket=") && !has(stub_log, "request="), "no debug lines");
	done("without debug there are no debug lines");
}

static void
t_info_mode(void)
{
	reset();
	expect(QR_BEGIN, NULL);
	send_challenge(QR_MODE_INFO);
	expect(QR_WAIT, check_wait_5s);
	send_verdict(QR_APPROVED, NULL, -1);
	CHECK(auth("mode=info wait=5") == PAM_SUCCESS, "info mode approve");
	CHECK(stub_n_prompts == 0 && stub_n_infos == 1, "no prompt, one info");
	CHECK(has(stub_transcript, "INFO: " QR_TEXT INFO_PROMPT "\n"), "QR and prompt as info");
	done("info mode: QR as info, WAIT with max_wait, no keystroke -> PAM_SUCCESS");

	reset();
	answers(1, CODE_TYPED);
	expect(QR_BEGIN, NULL);
	send_challenge(QR_MODE_INFO);
	expect(QR_WAIT, check_wait_5s);
	send_verdict(QR_OFFLINE, NULL, -1);
	expect(QR_CODE, check_code);
	send_verdict(QR_APPROVED, NULL, -1);
	CHECK(auth("mode=info wait=5") == PAM_SUCCESS, "info mode offline code");
	CHECK(has(stub_transcript, "PROMPT: Type the app's code, a (ASCII QR) or t (text); Enter keeps "
	    "waiting: \n"), "code prompt");
	done("info mode: OFFLINE -> code prompt -> right code -> PAM_SUCCESS");

	reset();
	answers(1, "");
	expect(QR_BEGIN, NULL);
	send_challenge(QR_MODE_INFO);
	expect(QR_WAIT, check_wait_5s);
	send_verdict(QR_OFFLINE, NULL, -1);
	expect(QR_WAIT, check_wait_5s);
	send_verdict(QR_APPROVED, NULL, -1);
	CHECK(auth("wait=5") == PAM_SUCCESS, "info mode keep waiting");
	done("info mode: OFFLINE, Enter waits again -> PAM_SUCCESS");

	reset();
	expect(QR_BEGIN, NULL);
	send_challenge(QR_MODE_INFO);
	expect(QR_WAIT, NULL);
	send_verdict(QR_OFFLINE, NULL, -1);
	CHECK(auth("mode=info") == PAM_CONV_ERR, "conversation fails at the code prompt");
	done("info mode: the conversation fails at the code prompt -> PAM_CONV_ERR");
}

static void
t_prompt_offline(void)
{
	reset();
	answers(2, "", CODE_TYPED);
	expect(QR_BEGIN, NULL);
	send_challenge(QR_MODE_PROMPT);
	expect(QR_WAIT, NULL);
	send_verdict(QR_OFFLINE, NULL, -1);
	expect(QR_CODE, check_code);
	send_verdict(QR_APPROVED, NULL, -1);
	CHECK(auth("") == PAM_SUCCESS, "prompt mode offline");
	CHECK(has(stub_transcript, "PROMPT: Your phone cannot reach this host right now. Type the "
	    "8-digit code shown in the qrauth app: \n"), "offline prompt");
	done("prompt mode: Enter, OFFLINE -> code prompt -> right code -> PAM_SUCCESS");
}

static void
t_conversation(void)
{
	reset();
	answers(3, "abc", "12345678901234567", "");
	expect(QR_BEGIN, NULL);
	send_challenge(QR_MODE_PROMPT);
	expect(QR_WAIT, NULL);
	send_verdict(QR_APPROVED, NULL, -1);
	CHECK(auth("") == PAM_SUCCESS, "garbage, 17 digits, then Enter");
	CHECK(stub_n_errors == 2 && has(stub_transcript, "ERROR: That is not a code"), "told twice");
	CHECK(has(stub_transcript, "PROMPT: Type the code, or press Enter to wait for approval: \n"),
	    "short re-prompt");
	done("non-digits and too many digits are refused and asked again");

	reset();
	answers(12, "x", "x", "x", "x", "x", "x", "x", "x", "x", "x", "x", "x");
	expect(QR_BEGIN, NULL);
	send_challenge(QR_MODE_PROMPT);
	CHECK(auth("") == PAM_MAXTRIES, "endless garbage");
	CHECK(stub_n_prompts == 10, "bounded at 10 rounds (%d)", stub_n_prompts);
	done("the prompt loop is bounded -> PAM_MAXTRIES");

	reset();	/* no answers: the conversation fails */
	expect(QR_BEGIN, NULL);
	send_challenge(QR_MODE_PROMPT);
	CHECK(auth("") == PAM_CONV_ERR, "conversation failure");
	CHECK(has(stub_log, "cause=\"conversation failed\""), "logged");
	done("conversation failure -> PAM_CONV_ERR");

	reset();
	stub.no_conv = 1;
	expect(QR_BEGIN, NULL);
	send_challenge(QR_MODE_PROMPT);
	CHECK(auth("") == PAM_CONV_ERR, "no conversation function");
	done("no conversation function -> PAM_CONV_ERR");

	reset();
	answers(1, "");
	expect(QR_BEGIN, NULL);
	send_challenge(QR_MODE_PROMPT);
	expect(QR_WAIT, NULL);
	send_verdict(QR_DENIED, NULL, -1);
	CHECK(auth_flags((int)PAM_SILENT, "", 1) == PAM_AUTH_ERR, "silent deny");
	CHECK(stub_n_errors == 0 && stub_n_prompts == 1, "PAM_SILENT: QR shown, no error message");
	done("PAM_SILENT keeps the QR prompt but not the status messages");

	reset();
	answers(1, "");
	expect(QR_BEGIN, NULL);
	send_challenge(QR_MODE_PROMPT);
	{
		/* The reply arrives one byte at a time. */
		struct qr_frame *fr = new_frame(QR_VERDICT);

		expect(QR_WAIT, NULL);
		frame_add_u8(fr, QR_VERDICT_RESULT, QR_APPROVED);
		send_frame(fr, 1);
	}
	CHECK(auth("") == PAM_SUCCESS, "bytewise reply");
	done("a reply trickling in byte by byte is read whole");
}

static void
t_user(void)
{
	static char long_user[300];

	reset();
	stub.get_user_rc = PAM_CONV_ERR;
	CHECK(auth_flags(0, "", 0) == PAM_AUTH_ERR, "no user");
	CHECK(has(stub_log, "cannot get user name"), "logged");
	done("pam_get_user fails -> PAM_AUTH_ERR");

	reset();
	memset(long_user, 'a', 257);
	stub.user = long_user;
	CHECK(auth_flags(0, "", 1) == PAM_AUTH_ERR, "257-byte user");
	CHECK(has(stub_log, "cannot build BEGIN"), "logged");
	done("a user name over 256 bytes is refused, not truncated -> PAM_AUTH_ERR");

	reset();
	stub.user = "al\xffice\n\"x";
	CHECK(auth_flags(0, "", 1) == PAM_AUTH_ERR, "non-UTF-8 user");
	CHECK(has(stub_log, "user=\"al?ice??x\" "), "user sanitised and quoted in the log");
	done("a user name that is not UTF-8 is refused; logs escape it");

	reset();
	stub.service = NULL;
	CHECK(auth_flags(0, "", 0) == PAM_AUTH_ERR, "no service");
	done("no PAM_SERVICE -> PAM_AUTH_ERR");
}

#define QR_TEXT_ASCII "##  ##\n  ##  \n"
/* Stands for the payload as text (the real one holds the nonce, which the harness keeps off screen). */
#define QR_TEXT_PLAIN "QRA1:hostid:sid:as-text\n"

static void
send_challenge_text(int mode, const char *qr_text)
{
	struct qr_frame *fr = new_frame(QR_CHALLENGE);

	frame_add_str(fr, QR_CHALLENGE_QR_TEXT, qr_text);
	frame_add_str(fr, QR_CHALLENGE_PROMPT, mode == QR_MODE_INFO ? INFO_PROMPT : PROMPT);
	frame_add_u32(fr, QR_CHALLENGE_EXPIRES, 80);
	frame_add_u8(fr, QR_CHALLENGE_MODE, (uint8_t)mode);
	frame_add_str(fr, QR_CHALLENGE_PAYLOAD, PAYLOAD);
	send_frame(fr, 0);
}

static void
check_render_ascii(const struct qr_msg *m)
{
	CHECK(m->f[QR_RENDER_QR].present && m->f[QR_RENDER_QR].num == QR_QR_ASCII, "RENDER qr=ascii");
}

static void
check_render_text(const struct qr_msg *m)
{
	CHECK(m->f[QR_RENDER_QR].present && m->f[QR_RENDER_QR].num == QR_QR_TEXT, "RENDER qr=text");
}

static void
t_rerender(void)
{
	reset();
	answers(2, "a", "");
	expect(QR_BEGIN, NULL);
	send_challenge(QR_MODE_PROMPT);
	expect(QR_RENDER, check_render_ascii);
	send_challenge_text(QR_MODE_PROMPT, QR_TEXT_ASCII);
	expect(QR_WAIT, check_wait_forever);
	send_verdict(QR_APPROVED, NULL, -1);
	CHECK(auth("") == PAM_SUCCESS, "approve after an ASCII re-render");
	CHECK(stub_n_prompts == 2 && stub_n_errors == 0, "two prompts, no error (%d, %d)", stub_n_prompts,
	    stub_n_errors);
	CHECK(has(stub_transcript, "PROMPT: " QR_TEXT_ASCII PROMPT " \n"), "the ASCII QR in one prompt");
	CHECK(has(stub_log, "rerender style=ascii") && has(stub_log, "result=approved how=online"),
	    "logged");
	done("prompt mode: a -> RENDER ascii -> the new QR and the prompt -> Enter -> PAM_SUCCESS");

	reset();
	answers(3, " T ", "t", CODE_TYPED);
	expect(QR_BEGIN, NULL);
	send_challenge(QR_MODE_PROMPT);
	expect(QR_RENDER, check_render_text);
	send_challenge_text(QR_MODE_PROMPT, QR_TEXT_PLAIN);
	expect(QR_RENDER, check_render_text);
	send_challenge_text(QR_MODE_PROMPT, QR_TEXT_PLAIN);
	expect(QR_CODE, check_code);
	send_verdict(QR_APPROVED, NULL, -1);
	CHECK(auth("") == PAM_SUCCESS, "code after text re-renders");
	CHECK(stub_n_prompts == 3, "three prompts");
	CHECK(has(stub_log, "result=approved how=code"), "logged how=code");
	done("prompt mode: t (any case, spaces), t again, then the code -> PAM_SUCCESS");

	reset();
	answers(1, "t");
	expect(QR_BEGIN, NULL);
	send_challenge(QR_MODE_INFO);
	expect(QR_WAIT, check_wait_5s);
	send_verdict(QR_OFFLINE, NULL, -1);
	expect(QR_RENDER, check_render_text);
	send_challenge_text(QR_MODE_INFO, QR_TEXT_PLAIN);
	expect(QR_WAIT, check_wait_5s);
	send_verdict(QR_APPROVED, NULL, -1);
	CHECK(auth("mode=info wait=5") == PAM_SUCCESS, "info mode text re-render");
	CHECK(stub_n_infos == 2 && stub_n_prompts == 1, "two info messages, one prompt");
	CHECK(has(stub_transcript, "INFO: " QR_TEXT_PLAIN INFO_PROMPT "\n"), "the text as info");
	done("info mode: OFFLINE prompt, t -> the text as info -> WAIT again -> PAM_SUCCESS");

	reset();
	answers(1, "a");
	expect(QR_BEGIN, NULL);
	send_challenge(QR_MODE_PROMPT);
	expect(QR_RENDER, check_render_ascii);
	send_verdict(QR_DENIED, NULL, -1);
	CHECK(auth("") == PAM_AUTH_ERR, "denied before the re-render");
	CHECK(has(stub_transcript, "ERROR: Login denied on the phone."), "user told");
	done("a RENDER answered by DENIED -> PAM_AUTH_ERR with the message");

	reset();
	answers(1, "a");
	expect(QR_BEGIN, NULL);
	send_challenge(QR_MODE_PROMPT);
	expect(QR_RENDER, NULL);
	send_challenge_text(QR_MODE_INFO, QR_TEXT_ASCII);
	CHECK(auth("") == PAM_AUTH_ERR, "mode changed");
	CHECK(has(stub_log, "challenge mode changed"), "logged");
	done("a re-render CHALLENGE in another mode is a bad reply -> PAM_AUTH_ERR");

	reset();
	answers(1, "a");
	expect(QR_BEGIN, NULL);
	send_challenge(QR_MODE_PROMPT);
	expect(QR_RENDER, NULL);
	send_verdict(QR_OFFLINE, NULL, -1);
	CHECK(auth("") == PAM_AUTH_ERR, "OFFLINE to RENDER");
	done("OFFLINE in answer to RENDER is a bad reply -> PAM_AUTH_ERR");

	reset();
	answers(2, "at", "");
	expect(QR_BEGIN, NULL);
	send_challenge(QR_MODE_PROMPT);
	expect(QR_WAIT, NULL);
	send_verdict(QR_APPROVED, NULL, -1);
	CHECK(auth("") == PAM_SUCCESS, "at is not a re-render");
	CHECK(has(stub_transcript, "ERROR: That is not a code: type the digits shown in the qrauth app, "
	    "a (ASCII QR), t (text) or just Enter."), "told what works");
	done("only a lone a or t asks for a re-render");
}

/* ---- review findings: each case performs the attack ---- */

static void
check_begin_canonical_root(const struct qr_msg *m)
{
	CHECK(fstr(m, QR_BEGIN_USER, "root"), "BEGIN user is the account's name (root), not as typed");
	CHECK(m->f[QR_BEGIN_UID].present && m->f[QR_BEGIN_UID].num == 0, "BEGIN uid 0");
}

static void
t_canonical_user(void)
{
	/* sssd case_sensitive=false: "ROOT" finds root. The agent must be asked about root (its
	 * devices file, its leases), or nouserok passes the login over as "no phone". */
	reset();
	nss_casefold = 1;
	stub.user = "ROOT";
	answers(1, "");
	expect(QR_BEGIN, check_begin_canonical_root);
	send_challenge(QR_MODE_PROMPT);
	expect(QR_WAIT, NULL);
	send_verdict(QR_APPROVED, NULL, -1);
	CHECK(auth("nouserok") == PAM_SUCCESS, "approved as root");
	CHECK(has(stub_log, "user=root rhost=203.0.113.7 service=sshd result=approved how=online"),
	    "decision logged under the account's name");
	CHECK(has(stub_log, "user=root ") && has(stub_log, "pam_user=ROOT"), "the typed name is logged once");
	CHECK(!has(stub_log, "user=ROOT rhost="), "no line under the typed name");
	done("a user name typed in another case (case-insensitive NSS) -> BEGIN and logs carry the account name");

	reset();
	stub.user = "root";
	expect(QR_BEGIN, check_begin_canonical_root);
	send_verdict(QR_NO_DEVICE, NULL, -1);
	CHECK(auth("") == PAM_AUTH_ERR, "no device");
	CHECK(!has(stub_log, "pam_user="), "same name: nothing more logged");
	done("a user name that is the account's name -> no pam_user in the log");
}

static void
t_lookup_error(void)
{
	char opt[192];

	/* EIO from NSS is not "no such user": without uid/home the agent would fall back to
	 * /etc/passwd and answer NO_DEVICE for an LDAP-only user, which nouserok ignores. */
	reset();
	nss_eio_for = "root";
	stub.user = "root";
	stub.service = "sudo";
	snprintf(opt, sizeof(opt), "socket=%s/nobody-here.sock nouserok failmode=open", sock_dir);
	CHECK(auth_flags(0, opt, 0) == PAM_AUTH_ERR, "lookup error with nouserok and failmode=open -> PAM_AUTH_ERR");
	CHECK(has(stub_log, "user=root rhost=203.0.113.7 service=sudo result=error cause=\"user lookup failed\" "
	    "detail=\"Input/output error\""), "logged with the cause");
	CHECK(!has(stub_log, "agent unreachable"), "the agent is not contacted");
	CHECK(has(stub_transcript, "ERROR: qrauth: cannot look up user root"), "user told");
	done("a passwd lookup error fails closed before the agent, even with nouserok (not PAM_IGNORE)");
}

static void
t_log_quoting(void)
{
	reset();
	stub.user = "mallory result=approved how=online";
	stub.rhost = "198.51.100.1 result=approved";
	expect(QR_BEGIN, NULL);
	send_verdict(QR_NO_DEVICE, NULL, -1);
	CHECK(auth("") == PAM_AUTH_ERR, "no device");
	CHECK(has(stub_log, "user=\"mallory result=approved how=online\" rhost=\"198.51.100.1 result=approved\" "
	    "service=sshd result=denied cause=\"no enrolled device\"\n"), "values with spaces are quoted");
	CHECK(!has(stub_log, "user=mallory"), "never unquoted");
	done("user and rhost with spaces and '=' are quoted in log lines: no forged result=");

	/* C1 controls (U+0085 is NEL) and bidi overrides/isolates, as valid UTF-8, and line separators. */
	reset();
	stub.user = "eve\xe2\x80\xaeroot\xc2\x85\xc2\x9b" "a\xe2\x81\xa6" "b\xe2\x81\xa9" "c\xe2\x80\xaa" "d\xe2\x80\xa8" "e";
	expect(QR_BEGIN, NULL);
	send_verdict(QR_NO_DEVICE, NULL, -1);
	CHECK(auth("") == PAM_AUTH_ERR, "no device");
	CHECK(has(stub_log, "user=\"eve?root??a?b?c?d?e\" "), "C1, bidi and separators replaced, one ? each");
	CHECK(has(stub_transcript, "no phone is enrolled for user eve?root??a?b?c?d?e;"), "also in messages");
	done("C1 controls, bidi overrides and line separators in a user name are replaced in logs and messages");

	reset();
	stub.user = "jos\xc3\xa9";
	expect(QR_BEGIN, NULL);
	send_verdict(QR_NO_DEVICE, NULL, -1);
	CHECK(auth("") == PAM_AUTH_ERR, "no device");
	CHECK(has(stub_log, "user=\"jos\xc3\xa9\" rhost=203.0.113.7 service=sshd "), "other UTF-8 kept, quoted");
	done("other non-ASCII letters are kept (quoted, as the agent quotes them)");
}

/* A listener that never accepts, its backlog (0: room for one) filled by one connection. */
static int
busy_listener(const char *path, int *filler)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

	unlink(path);
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	*filler = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || *filler < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0 || listen(fd, 0) != 0 ||
	    connect(*filler, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		perror("busy listener");
		exit(2);
	}
	return fd;
}

static void
t_busy_agent(void)
{
	char path[128], opt[192];
	int lfd, filler;

	snprintf(path, sizeof(path), "%s/busy.sock", sock_dir);
	reset();
	lfd = busy_listener(path, &filler);
	stub.service = "sudo";
	snprintf(opt, sizeof(opt), "socket=%s failmode=open timeout=1", path);
	CHECK(auth_flags(0, opt, 0) == PAM_AUTH_ERR, "busy agent with failmode=open -> PAM_AUTH_ERR");
	CHECK(elapsed_ms < 3000, "bounded by timeout=1 (%lld ms)", (long long)elapsed_ms);
	CHECK(has(stub_log, "result=error cause=\"agent unreachable\"") && !has(stub_log, "result=ignored"),
	    "logged as an error, not ignored");
	CHECK(stub_n_errors == 1 && has(stub_transcript, "ERROR: qrauth: the login approval service is not "
	    "answering"), "user told it is not answering (not 'not running')");
	done("failmode=open: an agent with its backlog full (busy, wedged) -> PAM_AUTH_ERR, not PAM_IGNORE");
	close(filler);
	close(lfd);
	unlink(path);

	/* Socket file there, nobody listening (agent stopped): that is "agent down". */
	reset();
	lfd = busy_listener(path, &filler);
	close(filler);
	close(lfd);
	CHECK(auth_flags(0, opt, 0) == PAM_IGNORE, "ECONNREFUSED with failmode=open -> PAM_IGNORE");
	CHECK(has(stub_log, "result=ignored cause=\"agent unreachable\"") && has(stub_log, "Connection refused"),
	    "logged");
	done("failmode=open: a socket nobody listens on (ECONNREFUSED) -> PAM_IGNORE");
	unlink(path);
}

static pthread_t module_thread;
static int eintr_filler;

static void
on_sigusr1(int sig)
{
	(void)sig;
}

/* Interrupt the module's blocking connect() with a signal, then make room in the backlog and
 * serve the login as the fake agent does. */
static void *
eintr_agent_main(void *arg)
{
	int fd;

	usleep(500 * 1000);	/* the module is in connect() by now, waiting on the full backlog */
	pthread_kill(module_thread, SIGUSR1);
	usleep(200 * 1000);
	if ((fd = accept(listen_fd, NULL, NULL)) >= 0)	/* the filler: now the module's turn */
		close(fd);
	close(eintr_filler);
	return agent_main(arg);
}

static void
t_connect_eintr(void)
{
	struct sigaction sa, old;

	reset();
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigusr1;	/* no SA_RESTART; connect() with SO_SNDTIMEO gives EINTR anyway */
	sigaction(SIGUSR1, &sa, &old);
	answers(1, "");
	expect(QR_BEGIN, NULL);
	send_challenge(QR_MODE_PROMPT);
	expect(QR_WAIT, NULL);
	send_verdict(QR_APPROVED, NULL, -1);
	listen_fd = busy_listener(sock_path, &eintr_filler);
	module_thread = pthread_self();
	pthread_create(&agent_thread, NULL, eintr_agent_main, NULL);
	agent_running = 1;
	CHECK(auth_flags(0, "", 0) == PAM_SUCCESS, "connect interrupted by a signal, then approved");
	CHECK(!has(stub_log, "served by uid") && !has(stub_log, "result=error"), "no bogus failure");
	sigaction(SIGUSR1, &old, NULL);
	done("connect() interrupted by a signal (EINTR) is retried on the blocking socket -> approved");
}

static void
t_header_cut(void)
{
	static const uint8_t two[] = { 0, 0 };

	/* Two bytes of a length header, then EOF: a reply cut off, not an agent that restarted. */
	reset();
	expect(QR_BEGIN, NULL);
	send_raw(two, sizeof(two));
	hang_up();
	CHECK(auth("timeout=2") == PAM_AUTH_ERR, "reply cut in its header");
	CHECK(!has(stub_log, "action=retry"), "BEGIN is not sent again");
	CHECK(elapsed_ms < 1500, "no second connection waited on (%lld ms)", (long long)elapsed_ms);
	CHECK(has(stub_transcript, "ERROR: qrauth: lost contact"), "user told");
	done("a reply cut inside its 4-byte length header is not taken for a restart -> no retry, PAM_AUTH_ERR");
}

static void
t_setcred(void)
{
	reset();
	CHECK(sm_setcred(stub_handle(), 0, 0, NULL) == PAM_SUCCESS, "setcred");
	done("pam_sm_setcred -> PAM_SUCCESS");
}

int
main(int argc, char **argv)
{
	const char *module = argc > 1 ? argv[1] : "./pam_qrauth.so";
	void *h;

	if ((h = dlopen(module, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		fprintf(stderr, "dlopen %s: %s\n", module, dlerror());
		return 2;
	}
	*(void **)&sm_authenticate = dlsym(h, "pam_sm_authenticate");
	*(void **)&sm_setcred = dlsym(h, "pam_sm_setcred");
	if (sm_authenticate == NULL || sm_setcred == NULL || dlsym(h, "frame_parser_feed") != NULL ||
	    dlsym(h, "cfg_init") != NULL) {
		fprintf(stderr, "%s: wrong exports\n", module);
		return 2;
	}
	strcpy(sock_dir, "/tmp/qrauth-test.XXXXXX");
	if (mkdtemp(sock_dir) == NULL) {
		perror("mkdtemp");
		return 2;
	}
	snprintf(sock_path, sizeof(sock_path), "%s/agent.sock", sock_dir);
	snprintf(sock_opt, sizeof(sock_opt), "socket=%s", sock_path);
	if (geteuid() != 0) {
		const struct passwd *me = getpwuid(geteuid());

		if (me == NULL) {
			fprintf(stderr, "who am I?\n");
			return 2;
		}
		snprintf(self_opt, sizeof(self_opt), "agentuser=%s", me->pw_name);
	} else {
		const struct passwd *nobody = getpwnam("nobody");

		strcpy(peer_dir, "/tmp/qrauth-peer.XXXXXX");
		if (mkdtemp(peer_dir) == NULL ||
		    chown(peer_dir, nobody ? nobody->pw_uid : 65534, nobody ? nobody->pw_gid : 65534) != 0) {
			perror("peer dir");
			return 2;
		}
		snprintf(peer_path, sizeof(peer_path), "%s/agent.sock", peer_dir);
	}

	t_approve_after_enter();
	t_begin_fields();
	t_deny();
	t_expired();
	t_code_right();
	t_code_wrong_three_times();
	t_code_wrong_then_enter();
	t_no_device();
	t_lease();
	t_uv_required();
	t_error_verdict();
	t_unreachable();
	t_passwd();
	t_peercred();
	t_bad_replies();
	t_options();
	t_info_mode();
	t_prompt_offline();
	t_rerender();
	t_conversation();
	t_user();
	t_canonical_user();
	t_lookup_error();
	t_log_quoting();
	t_busy_agent();
	t_connect_eintr();
	t_header_cut();
	t_setcred();

	rmdir(sock_dir);
	if (peer_dir[0] != '\0')
		rmdir(peer_dir);
	dlclose(h);
	printf("1..%d\n# %d checks passed, %d failed\n", n_ok + n_fail, n_ok, n_fail);
	return n_fail == 0 ? 0 : 1;
}
