/*
 * Ferry's Linux guest /init: a static, libc-free (the kernel's own nolibc)
 * PID 1 for the initramfs.
 *
 * Mounts /proc, /sys and devtmpfs on /dev, prints "ferry-init: ready" on its
 * own line, then runs the workload named by `ferry.workload=` on the kernel
 * command line (/proc/cmdline):
 *
 *   shell    (default) a tiny command loop on the console, see `help`
 *   idle     "heartbeat N" about once a second (nanosleep), forever
 *   kvstore  the bare-metal guests/kvstore.c workload over an anonymous
 *            mapping: ferry.table_mib= (default 32), ferry.hot_pct= (2),
 *            ferry.hot_ops_pct= (95), ferry.put_pct= (10),
 *            ferry.report_every= (1000000), ferry.ops= (0 = forever);
 *            prints "ops N hits H sum 0xS" every report_every ops
 *   dirty    the bare-metal guests/dirty.c workload (without pacing):
 *            ferry.size_mib= (default 16), ferry.pattern= (0 sequential,
 *            1 random order), ferry.passes= (0 = forever); "pass N" per pass
 *   kvserver a TCP key-value server (GET/PUT lines) on ferry.port= (7000)
 *            for `ferry client`; the network comes from ip= on the command
 *            line; prints "kvserver: listening on port P"
 *   disk     block I/O on /dev/vda (O_DIRECT, so every request reaches the
 *            device): ferry.disk_mib= (default 4) of raw blocks, pass after
 *            pass (ferry.passes=, 0 = forever): read each 64 KiB chunk and
 *            check it holds the previous pass's pattern, write this pass's,
 *            fsync (a FLUSH), re-read and check everything, and print
 *            "disk pass N sum 0xS"; ferry.read_mib=N first reads N MiB
 *            sequentially in 1 MiB requests and prints the rate
 *            ("disk: read N MiB in U us, R MB/s"; time, so not deterministic);
 *            ferry.disk_file=1 does the same on a file, /mnt/ferry.dat,
 *            of an ext2 file system on /dev/vda (mounted at /mnt, the file
 *            created or extended, O_DIRECT too, and a sync(2) after each
 *            pass's fsync; "disk: ext2 file ..." first)
 *
 * ferry.timing=1 adds a line "ferry-init: timing time T instret I" after the
 * ready line (the time and instret CSRs read just before it).
 *
 * Everything is deterministic given the command line: fixed PRNG seeds, no
 * time-based randomness.  If a workload stops (corruption, or a finite
 * ops/passes count) init prints "ferry-init: workload exited N" and powers
 * the machine off (PID 1 must not exit).
 *
 * Build: see build.sh (riscv64-linux-gnu-gcc -nostdlib -static
 *        -include nolibc.h against the kernel's installed UAPI headers).
 */

/* nolibc.h is force-included by the build (-include nolibc.h); it brings the
 * UAPI headers (MS_*, MAP_*, LINUX_REBOOT_*) too. */

#define MIB (1024UL * 1024UL)
#define PAGE 4096UL

/* ------------------------------------------------------------ output */

static char obuf[512];
static unsigned olen;

static void flush(void)
{
	unsigned off = 0;
	while (off < olen) {
		ssize_t n = write(1, obuf + off, olen - off);
		if (n <= 0)
			break;
		off += n;
	}
	olen = 0;
}

static void putch(char c)
{
	if (olen == sizeof(obuf))
		flush();
	obuf[olen++] = c;
}

static void puts_(const char *s)
{
	while (*s)
		putch(*s++);
}

static void putu(uint64_t v)
{
	char t[21];
	int i = 0;
	do
		t[i++] = '0' + v % 10;
	while (v /= 10);
	while (i)
		putch(t[--i]);
}

static void puthex(uint64_t v)
{
	char t[17];
	int i = 0;
	do
		t[i++] = "0123456789abcdef"[v & 15];
	while (v >>= 4);
	puts_("0x");
	while (i)
		putch(t[--i]);
}

/* Print a whole line with one write(2). */
static void line(const char *s)
{
	puts_(s);
	putch('\n');
	flush();
}

/* ------------------------------------------------------------ helpers */

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = { (long)(ns / 1000000000UL), (long)(ns % 1000000000UL) };
	my_syscall2(__NR_nanosleep, &ts, 0);
}

static void power_off(void)
{
	reboot(LINUX_REBOOT_CMD_POWER_OFF);
	line("ferry-init: poweroff failed");
	for (;;)
		sleep_ns(1000000000UL);
}

/* Read a whole (small) file into buf, NUL-terminated; returns length or -1. */
static long slurp(const char *path, char *buf, long size)
{
	int fd = open(path, O_RDONLY, 0);
	long len = 0;
	if (fd < 0)
		return -1;
	while (len < size - 1) {
		ssize_t n = read(fd, buf + len, size - 1 - len);
		if (n <= 0)
			break;
		len += n;
	}
	close(fd);
	buf[len] = 0;
	return len;
}

static char cmdline[4096];

/* Value of "ferry.KEY=" on the kernel command line, copied into out. */
static int param(const char *key, char *out, int outsz)
{
	int klen = strlen(key);
	const char *p = cmdline;
	while (*p) {
		while (*p == ' ' || *p == '\n')
			p++;
		const char *w = p;
		while (*p && *p != ' ' && *p != '\n')
			p++;
		if (p - w > 6 + klen && !memcmp(w, "ferry.", 6) &&
		    !memcmp(w + 6, key, klen) && w[6 + klen] == '=') {
			const char *v = w + 7 + klen;
			int n = 0;
			while (v < p && n < outsz - 1)
				out[n++] = *v++;
			out[n] = 0;
			return 1;
		}
	}
	return 0;
}

static uint64_t param_u64(const char *key, uint64_t dflt)
{
	char v[32];
	uint64_t x = 0;
	if (!param(key, v, sizeof(v)) || !v[0])
		return dflt;
	for (const char *s = v; *s; s++) {
		if (*s < '0' || *s > '9')
			return dflt;
		x = x * 10 + (*s - '0');
	}
	return x;
}

static void print_cfg(const char *name, const char *const *keys,
		      const uint64_t *vals, int n)
{
	puts_(name);
	putch(':');
	for (int i = 0; i < n; i++) {
		putch(' ');
		puts_(keys[i]);
		putch('=');
		putu(vals[i]);
	}
	putch('\n');
	flush();
}

/* Same generators as guests/common/ferry.h. */
static inline uint64_t xorshift64(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

static inline uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static inline uint64_t range(uint64_t r, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)r * n) >> 64);
}

static void *anon(uint64_t bytes)
{
	void *p = mmap(0, bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		puts_("ferry-init: mmap of ");
		putu(bytes);
		puts_(" bytes failed\n");
		flush();
		return 0;
	}
	return p;
}

/* ------------------------------------------------------------ idle */

static int run_idle(void)
{
	line("idle: heartbeat every second");
	for (uint64_t n = 1;; n++) {
		sleep_ns(1000000000UL);
		puts_("heartbeat ");
		putu(n);
		putch('\n');
		flush();
	}
	return 0;
}

/* ------------------------------------------------------------ kvstore */

#define GOLD  0x9e3779b97f4a7c15ULL
#define EMPTY (~0ULL)

struct rec {
	uint64_t key;
	uint64_t version;
	uint64_t value[6];
};
_Static_assert(sizeof(struct rec) == 64, "record size");
#define SLOTS_PER_PAGE (PAGE / sizeof(struct rec))

struct zone { uint64_t first, nslots; };

static struct rec *table;
static uint32_t *versions;
static struct zone hot, cold;
static uint64_t hot_keys;

static inline uint64_t value0(uint64_t key, uint64_t version)
{
	return mix64((key << 32) + version);
}

static inline const struct zone *zone_of(uint64_t key)
{
	return key < hot_keys ? &hot : &cold;
}

static inline uint64_t home_slot(uint64_t key, const struct zone *z)
{
	return z->first + range(mix64(key), z->nslots);
}

static int corrupt(uint64_t key, const char *what, uint64_t expect, uint64_t got)
{
	puts_("CORRUPT key ");
	putu(key);
	puts_("\ndetail ");
	puts_(what);
	puts_(" expected ");
	puthex(expect);
	puts_(" got ");
	puthex(got);
	putch('\n');
	flush();
	return 1;
}

static struct rec *lookup(uint64_t key)
{
	const struct zone *z = zone_of(key);
	uint64_t s = home_slot(key, z), end = z->first + z->nslots;
	for (uint64_t n = 0; n < z->nslots; n++) {
		struct rec *r = &table[s];
		if (r->key == key)
			return r;
		if (r->key == EMPTY)
			break;
		if (++s == end)
			s = z->first;
	}
	return 0;
}

static void write_value(struct rec *r, uint64_t key, uint64_t version)
{
	uint64_t v = value0(key, version);
	r->version = version;
	for (int j = 0; j < 6; j++, v += GOLD)
		r->value[j] = v;
}

static void insert(uint64_t key)
{
	const struct zone *z = zone_of(key);
	uint64_t s = home_slot(key, z), end = z->first + z->nslots;
	while (table[s].key != EMPTY)
		if (++s == end)
			s = z->first;
	table[s].key = key;
	write_value(&table[s], key, 0);
	versions[key] = 0;
}

static void ops_line(uint64_t n, uint64_t hits, uint64_t sum)
{
	puts_("ops ");
	putu(n);
	puts_(" hits ");
	putu(hits);
	puts_(" sum ");
	puthex(sum);
	putch('\n');
	flush();
}

static int run_kvstore(void)
{
	static const char *const keys[] = { "table_mib", "hot_pct", "hot_ops_pct",
					    "put_pct", "report_every", "ops" };
	uint64_t cfg[6] = {
		param_u64("table_mib", 32), param_u64("hot_pct", 2),
		param_u64("hot_ops_pct", 95), param_u64("put_pct", 10),
		param_u64("report_every", 1000000), param_u64("ops", 0),
	};
	print_cfg("kvstore", keys, cfg, 6);
	uint64_t table_mib = cfg[0], hot_pct = cfg[1], hot_ops_pct = cfg[2];
	uint64_t put_pct = cfg[3], report_every = cfg[4], ops = cfg[5];

	if (hot_pct > 100)
		hot_pct = 100;
	uint64_t nslots = table_mib * (MIB / sizeof(struct rec));
	uint64_t hot_slots = (nslots * hot_pct + 99) / 100;
	hot_slots = (hot_slots + SLOTS_PER_PAGE - 1) / SLOTS_PER_PAGE * SLOTS_PER_PAGE;
	if (hot_slots > nslots)
		hot_slots = nslots;
	hot = (struct zone){ 0, hot_slots };
	cold = (struct zone){ hot_slots, nslots - hot_slots };
	hot_keys = hot.nslots / 4 * 3;
	uint64_t cold_keys = cold.nslots / 4 * 3;
	uint64_t nkeys = hot_keys + cold_keys;

	/* one mapping: the table, then the version array page-aligned after it */
	uint64_t tbytes = nslots * sizeof(struct rec);
	uint64_t vbytes = (nkeys * sizeof(uint32_t) + PAGE - 1) & ~(PAGE - 1);
	char *base = anon(tbytes + vbytes);
	if (!base)
		return 2;
	table = (struct rec *)base;
	versions = (uint32_t *)(base + tbytes);

	puts_("kvstore: ");
	putu(nslots);
	puts_(" slots, ");
	putu(nkeys);
	puts_(" keys, hot ");
	putu(hot_keys);
	puts_(" keys in ");
	putu(hot.nslots);
	puts_(" slots (");
	putu(hot.nslots * sizeof(struct rec) / 1024);
	puts_(" KiB)\n");
	flush();

	for (uint64_t s = 0; s < nslots; s++) {
		struct rec *r = &table[s];
		r->key = EMPTY;
		r->version = 0;
		for (int j = 0; j < 6; j++)
			r->value[j] = 0;
	}
	for (uint64_t k = 0; k < nkeys; k++)
		insert(k);
	puts_("populated ");
	putu(nkeys);
	puts_(" keys\n");
	flush();
	if (nkeys == 0) {
		line("kvstore: no keys");
		return 2;
	}

	uint64_t rng = 0x2545f4914f6cdd1dULL;
	uint64_t hits = 0, sum = 0, n = 0;
	while (ops == 0 || n < ops) {
		uint64_t r1 = xorshift64(&rng);
		uint64_t r2 = xorshift64(&rng);
		int is_hot = cold_keys == 0 ||
			     (hot_keys != 0 && ((r1 >> 40) % 100) < hot_ops_pct);
		int is_put = ((r1 & 0xffffff) % 100) < put_pct;
		uint64_t key = is_hot ? range(r2, hot_keys)
				      : hot_keys + range(r2, cold_keys);

		struct rec *r = lookup(key);
		if (!r)
			return corrupt(key, "lookup (key missing)", key, EMPTY);
		uint64_t ver = versions[key];
		if (r->version != ver)
			return corrupt(key, "version", ver, r->version);
		if (is_put) {
			ver = (uint32_t)(ver + 1);
			versions[key] = (uint32_t)ver;
			write_value(r, key, ver);
		} else {
			uint64_t v = value0(key, ver);
			for (int j = 0; j < 6; j++, v += GOLD)
				if (r->value[j] != v)
					return corrupt(key, "value", v, r->value[j]);
			sum += r->value[0];
		}
		hits += is_hot;
		n++;
		if (report_every && n % report_every == 0)
			ops_line(n, hits, sum);
	}
	if (!report_every || n % report_every != 0)
		ops_line(n, hits, sum);
	return 0;
}

/* ------------------------------------------------------------ dirty */

struct perm { uint64_t mask, a, b, c; unsigned s; };

static inline uint64_t perm_step(const struct perm *p, uint64_t x)
{
	x = (x * p->a) & p->mask;
	x ^= x >> p->s;
	x = (x + p->b) & p->mask;
	x = (x * p->c) & p->mask;
	x ^= x >> p->s;
	return x;
}

static inline uint64_t perm_apply(const struct perm *p, uint64_t x, uint64_t n)
{
	do
		x = perm_step(p, x);
	while (x >= n);
	return x;
}

static int run_dirty(void)
{
	static const char *const keys[] = { "size_mib", "pattern", "passes" };
	uint64_t cfg[3] = { param_u64("size_mib", 16), param_u64("pattern", 0),
			    param_u64("passes", 0) };
	print_cfg("dirty", keys, cfg, 3);
	uint64_t size_mib = cfg[0], pattern = cfg[1], passes = cfg[2];

	const uint64_t wpp = PAGE / 8;
	uint64_t npages = size_mib * (MIB / PAGE);
	volatile uint64_t *region = anon(npages * PAGE);
	if (!region)
		return 2;
	uint64_t rng = 0x9e3779b97f4a7c15ULL;

	unsigned bits = 0;
	while ((1ULL << bits) < npages)
		bits++;
	struct perm pm = { (1ULL << bits) - 1, 1, 0, 1, (bits + 1) / 2 };
	if (pm.s == 0)
		pm.s = 1;

	for (uint64_t pass = 1; passes == 0 || pass <= passes; pass++) {
		if (pattern) {
			pm.a = xorshift64(&rng) | 1;
			pm.b = xorshift64(&rng);
			pm.c = xorshift64(&rng) | 1;
		}
		for (uint64_t i = 0; i < npages; i++) {
			uint64_t pg = pattern ? perm_apply(&pm, i, npages) : i;
			volatile uint64_t *w = region + pg * wpp;
			uint64_t v = (pass << 32) | pg;
			if (pass > 1 && w[0] != (v - (1ULL << 32))) {
				puts_("CORRUPT page ");
				putu(pg);
				puts_("\ndetail pass ");
				putu(pass);
				puts_(" word 0 expected ");
				puthex(v - (1ULL << 32));
				puts_(" got ");
				puthex(w[0]);
				putch('\n');
				flush();
				return 1;
			}
			for (uint64_t k = 0; k < 8; k++)
				w[k * (wpp / 8)] = v ^ (k << 60);
		}
		puts_("pass ");
		putu(pass);
		putch('\n');
		flush();
	}
	return 0;
}

/* ------------------------------------------------------------ kvserver */

/*
 * A TCP key-value server for the clients of issue 12 (`ferry client`): port
 * ferry.port= (default 7000), line based:
 *   GET key\n        -> VALUE key value\n  or  MISSING key\n
 *   PUT key value\n  -> OK\n
 * anything else      -> ERROR reason\n
 * Keys and values are ASCII tokens (no space or control character) of 1 to
 * 64 bytes.  The store is an open-addressing hash table in guest memory
 * (ferry.kv_slots=, default 16384; a full table answers ERROR full).  Many
 * connections at once through poll(2) (up to KV_CONNS); replies go out in
 * request order, one write(2) per batch of requests read together, with
 * TCP_NODELAY.  A connection whose replies the peer does not read stops being
 * read until they drain.
 *
 * nolibc (6.1) wraps poll but not the socket calls: those go through
 * my_syscall*.  The socket constants are the asm-generic ones (riscv).
 */

#define KV_CONNS   64
#define KV_TOKEN   64
#define KV_IN      512
#define KV_OUT     4096
#define KV_AF_INET     2
#define KV_SOCK_STREAM 1
#define KV_SOCK_NONBLOCK 0x800    /* = O_NONBLOCK */
#define KV_SOL_SOCKET  1
#define KV_SO_REUSEADDR 2
#define KV_IPPROTO_TCP 6
#define KV_TCP_NODELAY 1

struct kv_sockaddr_in {
	uint16_t family;
	uint16_t port;            /* network byte order */
	uint32_t addr;            /* network byte order */
	uint8_t zero[8];
};

struct kv_slot {
	uint8_t klen, vlen;       /* klen 0: empty */
	char key[KV_TOKEN];
	char value[KV_TOKEN];
};

struct kv_conn {
	int fd;                   /* -1: free */
	unsigned inlen, outlen, outoff;
	char in[KV_IN];
	char out[KV_OUT];
};

static struct kv_slot *kv_table;
static uint64_t kv_nslots, kv_used;
static struct kv_conn kv_conns[KV_CONNS];

static uint16_t kv_htons(uint16_t v)
{
	return (uint16_t)((v << 8) | (v >> 8));
}

static long kv_socket_call3(long nr, long a, long b, long c)
{
	return my_syscall3(nr, a, b, c);
}

static int kv_setopt(int fd, int level, int opt, int val)
{
	return my_syscall5(__NR_setsockopt, fd, level, opt, &val, sizeof(val));
}

static uint64_t kv_hash(const char *s, unsigned n)
{
	uint64_t h = 0xcbf29ce484222325ULL;     /* FNV-1a */
	for (unsigned i = 0; i < n; i++)
		h = (h ^ (uint8_t)s[i]) * 0x100000001b3ULL;
	return mix64(h);
}

/* The slot holding key, or the empty slot where it would go (0 if full). */
static struct kv_slot *kv_find(const char *key, unsigned klen)
{
	uint64_t s = range(kv_hash(key, klen), kv_nslots);
	for (uint64_t n = 0; n < kv_nslots; n++) {
		struct kv_slot *e = &kv_table[s];
		if (e->klen == 0 || (e->klen == klen && !memcmp(e->key, key, klen)))
			return e;
		if (++s == kv_nslots)
			s = 0;
	}
	return 0;
}

static int kv_token_ok(const char *t, unsigned n)
{
	if (n == 0 || n > KV_TOKEN)
		return 0;
	for (unsigned i = 0; i < n; i++)
		if (t[i] <= ' ' || t[i] > '~')
			return 0;
	return 1;
}

/* Append to c's output; the caller has checked there is room for a reply. */
static void kv_out(struct kv_conn *c, const char *s, unsigned n)
{
	memcpy(c->out + c->outlen, s, n);
	c->outlen += n;
}

static void kv_outs(struct kv_conn *c, const char *s)
{
	kv_out(c, s, strlen(s));
}

/* Answer one request line (without its '\n'). */
static void kv_request(struct kv_conn *c, char *l, unsigned n)
{
	if (n && l[n - 1] == '\r')
		n--;
	/* split into at most three space-separated words */
	char *w[3];
	unsigned wl[3], nw = 0, i = 0;
	while (i < n) {
		while (i < n && l[i] == ' ')
			i++;
		if (i == n)
			break;
		if (nw == 3) {
			kv_outs(c, "ERROR too many words\n");
			return;
		}
		w[nw] = l + i;
		while (i < n && l[i] != ' ')
			i++;
		wl[nw] = (unsigned)(l + i - w[nw]);
		nw++;
	}
	if (nw == 2 && wl[0] == 3 && !memcmp(w[0], "GET", 3)) {
		if (!kv_token_ok(w[1], wl[1])) {
			kv_outs(c, "ERROR bad key\n");
			return;
		}
		struct kv_slot *e = kv_find(w[1], wl[1]);
		if (!e || e->klen == 0) {
			kv_outs(c, "MISSING ");
			kv_out(c, w[1], wl[1]);
			kv_outs(c, "\n");
			return;
		}
		kv_outs(c, "VALUE ");
		kv_out(c, e->key, e->klen);
		kv_outs(c, " ");
		kv_out(c, e->value, e->vlen);
		kv_outs(c, "\n");
	} else if (nw == 3 && wl[0] == 3 && !memcmp(w[0], "PUT", 3)) {
		if (!kv_token_ok(w[1], wl[1]) || !kv_token_ok(w[2], wl[2])) {
			kv_outs(c, "ERROR bad key or value\n");
			return;
		}
		struct kv_slot *e = kv_find(w[1], wl[1]);
		if (!e || (e->klen == 0 && kv_used + 1 >= kv_nslots)) {
			kv_outs(c, "ERROR full\n");   /* one slot stays empty: probes end */
			return;
		}
		if (e->klen == 0) {
			memcpy(e->key, w[1], wl[1]);
			e->klen = (uint8_t)wl[1];
			kv_used++;
		}
		memcpy(e->value, w[2], wl[2]);
		e->vlen = (uint8_t)wl[2];
		kv_outs(c, "OK\n");
	} else {
		kv_outs(c, "ERROR unknown request\n");
	}
}

static void kv_close(struct kv_conn *c)
{
	close(c->fd);
	c->fd = -1;
}

/* Write what c has queued; 0 on success (possibly partial), -1 if the
 * connection failed. */
static int kv_flush(struct kv_conn *c)
{
	while (c->outoff < c->outlen) {
		ssize_t n = write(c->fd, c->out + c->outoff, c->outlen - c->outoff);
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0)
			return -1;
		c->outoff += n;
	}
	if (c->outoff == c->outlen)
		c->outoff = c->outlen = 0;
	return 0;
}

/* The longest reply: "VALUE " key " " value "\n". */
#define KV_MAX_REPLY (6 + KV_TOKEN + 1 + KV_TOKEN + 1)

/* Answer the complete lines in c's input while replies fit. */
static int kv_serve(struct kv_conn *c)
{
	unsigned start = 0;
	int waiting = 0;
	for (unsigned i = 0; i < c->inlen; i++) {
		if (c->in[i] != '\n')
			continue;
		if (c->outlen + KV_MAX_REPLY > KV_OUT) {
			waiting = 1;         /* resumes once the replies drain */
			break;
		}
		kv_request(c, c->in + start, i - start);
		start = i + 1;
	}
	if (start) {
		memmove(c->in, c->in + start, c->inlen - start);
		c->inlen -= start;
	}
	if (c->inlen == KV_IN && !waiting) {   /* a line longer than any request */
		if (c->outlen + KV_MAX_REPLY <= KV_OUT)
			kv_outs(c, "ERROR line too long\n");
		kv_flush(c);
		return -1;
	}
	return kv_flush(c);
}

static int run_kvserver(void)
{
	static const char *const keys[] = { "port", "kv_slots" };
	uint64_t cfg[2] = { param_u64("port", 7000), param_u64("kv_slots", 16384) };
	print_cfg("kvserver", keys, cfg, 2);
	if (cfg[0] == 0 || cfg[0] > 65535 || cfg[1] < 2) {
		line("kvserver: bad port or kv_slots");
		return 2;
	}
	kv_nslots = cfg[1];
	kv_table = anon(kv_nslots * sizeof(struct kv_slot));   /* zero: all empty */
	if (!kv_table)
		return 2;
	for (int i = 0; i < KV_CONNS; i++)
		kv_conns[i].fd = -1;

	int lfd = kv_socket_call3(__NR_socket, KV_AF_INET,
				  KV_SOCK_STREAM | KV_SOCK_NONBLOCK, 0);
	if (lfd < 0) {
		line("kvserver: socket failed");
		return 2;
	}
	kv_setopt(lfd, KV_SOL_SOCKET, KV_SO_REUSEADDR, 1);
	struct kv_sockaddr_in sa = { KV_AF_INET, kv_htons((uint16_t)cfg[0]), 0, { 0 } };
	if (kv_socket_call3(__NR_bind, lfd, (long)&sa, sizeof(sa)) < 0 ||
	    kv_socket_call3(__NR_listen, lfd, 64, 0) < 0) {
		line("kvserver: bind or listen failed");
		return 2;
	}
	puts_("kvserver: listening on port ");
	putu(cfg[0]);
	putch('\n');
	flush();

	static struct pollfd pfd[KV_CONNS + 1];
	static int who[KV_CONNS + 1];
	for (;;) {
		int n = 0;
		pfd[n] = (struct pollfd){ lfd, POLLIN, 0 };
		who[n++] = -1;
		for (int i = 0; i < KV_CONNS; i++) {
			struct kv_conn *c = &kv_conns[i];
			if (c->fd < 0)
				continue;
			short ev = 0;
			if (c->outlen + KV_MAX_REPLY <= KV_OUT)
				ev |= POLLIN;
			if (c->outlen)
				ev |= POLLOUT;
			pfd[n] = (struct pollfd){ c->fd, ev, 0 };
			who[n++] = i;
		}
		if (poll(pfd, n, -1) < 0)
			continue;                    /* EINTR */
		for (int k = 1; k < n; k++) {
			struct kv_conn *c = &kv_conns[who[k]];
			short re = pfd[k].revents;
			if (!re)
				continue;
			int bad = 0;
			if (re & POLLOUT)
				bad = kv_flush(c);
			if (!bad && (re & (POLLIN | POLLHUP | POLLERR))) {
				ssize_t r = read(c->fd, c->in + c->inlen, KV_IN - c->inlen);
				if (r > 0) {
					c->inlen += r;
					bad = kv_serve(c);
				} else if (r == 0 || errno != EAGAIN) {
					bad = -1;
				}
			} else if (!bad) {
				bad = kv_serve(c);   /* replies drained: lines may wait */
			}
			if (bad)
				kv_close(c);
		}
		if (pfd[0].revents & POLLIN) {
			for (;;) {
				int fd = my_syscall4(__NR_accept4, lfd, 0, 0, KV_SOCK_NONBLOCK);
				if (fd < 0)
					break;
				int i = 0;
				while (i < KV_CONNS && kv_conns[i].fd >= 0)
					i++;
				if (i == KV_CONNS) {
					close(fd);          /* full: refuse */
					continue;
				}
				kv_setopt(fd, KV_IPPROTO_TCP, KV_TCP_NODELAY, 1);
				kv_conns[i].fd = fd;
				kv_conns[i].inlen = kv_conns[i].outlen = kv_conns[i].outoff = 0;
			}
		}
	}
	return 0;
}

/* ------------------------------------------------------------ disk */

#define DISK_CHUNK (64UL * 1024UL)
#define BLKGETSIZE64_ 0x80081272UL
#ifndef O_DIRECT
#define O_DIRECT 040000 /* asm-generic/fcntl.h, which RISC-V uses */
#endif

static inline uint64_t disk_word(uint64_t pass, uint64_t index)
{
	return mix64((pass << 48) ^ index);
}

static uint64_t now_us(void)
{
	struct timespec ts;
	my_syscall2(__NR_clock_gettime, 1 /* CLOCK_MONOTONIC */, &ts);
	return (uint64_t)ts.tv_sec * 1000000UL + (uint64_t)ts.tv_nsec / 1000UL;
}

static int disk_io(int fd, int writing, void *buf, uint64_t len, uint64_t off)
{
	if (lseek(fd, (off_t)off, SEEK_SET) < 0)
		return -1;
	ssize_t n = writing ? write(fd, buf, len) : read(fd, buf, len);
	return n == (ssize_t)len ? 0 : -1;
}

static int disk_corrupt(uint64_t pass, uint64_t index, uint64_t expect, uint64_t got)
{
	puts_("CORRUPT disk pass ");
	putu(pass);
	puts_(" word ");
	putu(index);
	puts_(" expected ");
	puthex(expect);
	puts_(" got ");
	puthex(got);
	putch('\n');
	flush();
	return 1;
}

/* Checks that buf (words from first) holds pass's pattern; adds them to *sum. */
static int disk_check(const uint64_t *buf, uint64_t first, uint64_t words, uint64_t pass, uint64_t *sum)
{
	for (uint64_t i = 0; i < words; i++) {
		uint64_t v = disk_word(pass, first + i);
		if (buf[i] != v)
			return disk_corrupt(pass, first + i, v, buf[i]);
		*sum = (*sum << 7 | *sum >> 57) ^ v;
	}
	return 0;
}

static int run_disk(void)
{
	static const char *const keys[] = { "disk_mib", "passes", "read_mib", "disk_file" };
	uint64_t cfg[4] = { param_u64("disk_mib", 4), param_u64("passes", 0), param_u64("read_mib", 0), param_u64("disk_file", 0) };
	print_cfg("disk", keys, cfg, 4);
	uint64_t bytes = cfg[0] * MIB, passes = cfg[1], read_mib = cfg[2];

	int fd;
	uint64_t size = 0;
	if (cfg[3]) {
		/* A file on ext2: the file system's own blocks and metadata go through the device too. */
		mkdir("/mnt", 0755);
		if (mount("/dev/vda", "/mnt", "ext2", 0, NULL) < 0) {
			line("disk: cannot mount /dev/vda (ext2) on /mnt");
			return 2;
		}
		fd = open("/mnt/ferry.dat", O_RDWR | O_CREAT | O_DIRECT, 0644);
		if (fd < 0) {
			line("disk: cannot open /mnt/ferry.dat");
			return 2;
		}
		size = bytes;
		puts_("disk: ext2 file /mnt/ferry.dat, ");
		putu(cfg[0]);
		puts_(" MiB\n");
		flush();
	} else {
		fd = open("/dev/vda", O_RDWR | O_DIRECT, 0);
		if (fd < 0) {
			line("disk: cannot open /dev/vda");
			return 2;
		}
		if (ioctl(fd, BLKGETSIZE64_, &size) < 0 || size < DISK_CHUNK) {
			line("disk: /dev/vda has no usable size");
			return 2;
		}
	}
	if (bytes > size)
		bytes = size / DISK_CHUNK * DISK_CHUNK;
	uint64_t *buf = anon(MIB);
	if (!buf)
		return 2;

	if (read_mib) {
		uint64_t off = 0, t0 = now_us();
		for (uint64_t i = 0; i < read_mib; i++) {
			if (off + MIB > size)
				off = 0;
			if (disk_io(fd, 0, buf, MIB, off) < 0) {
				line("disk: read failed");
				return 2;
			}
			off += MIB;
		}
		uint64_t us = now_us() - t0;
		puts_("disk: read ");
		putu(read_mib);
		puts_(" MiB in ");
		putu(us);
		puts_(" us, ");
		putu(us ? read_mib * MIB / us : 0);
		puts_(" MB/s\n");
		flush();
	}

	const uint64_t cw = DISK_CHUNK / 8;
	for (uint64_t pass = 1; passes == 0 || pass <= passes; pass++) {
		uint64_t sum = 0;
		for (uint64_t off = 0; off < bytes; off += DISK_CHUNK) {
			uint64_t first = off / 8;
			if (pass > 1) {
				if (disk_io(fd, 0, buf, DISK_CHUNK, off) < 0) {
					line("disk: read failed");
					return 2;
				}
				if (disk_check(buf, first, cw, pass - 1, &sum))
					return 1;
			}
			for (uint64_t i = 0; i < cw; i++)
				buf[i] = disk_word(pass, first + i);
			if (disk_io(fd, 1, buf, DISK_CHUNK, off) < 0) {
				line("disk: write failed");
				return 2;
			}
		}
		if (fsync(fd) < 0) {
			line("disk: fsync failed");
			return 2;
		}
		if (cfg[3])
			my_syscall0(__NR_sync); /* the file system's metadata too (its directory entry, bitmaps) */
		sum = 0;
		for (uint64_t off = 0; off < bytes; off += DISK_CHUNK) {
			if (disk_io(fd, 0, buf, DISK_CHUNK, off) < 0) {
				line("disk: read failed");
				return 2;
			}
			if (disk_check(buf, off / 8, cw, pass, &sum))
				return 1;
		}
		puts_("disk pass ");
		putu(pass);
		puts_(" sum ");
		puthex(sum);
		putch('\n');
		flush();
	}
	return 0;
}

/* ------------------------------------------------------------ shell */

static char fbuf[8192];

static void cat(const char *path)
{
	int fd = open(path, O_RDONLY, 0);
	if (fd < 0) {
		puts_("cat: cannot open ");
		line(path);
		return;
	}
	for (;;) {
		ssize_t n = read(fd, fbuf, sizeof(fbuf));
		if (n <= 0)
			break;
		write(1, fbuf, n);
	}
	close(fd);
}

static void ls(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY, 0);
	if (fd < 0) {
		puts_("ls: cannot open ");
		line(path);
		return;
	}
	for (;;) {
		int n = getdents64(fd, (struct linux_dirent64 *)fbuf, sizeof(fbuf));
		if (n <= 0)
			break;
		for (int off = 0; off < n;) {
			struct linux_dirent64 *d = (struct linux_dirent64 *)(fbuf + off);
			if (d->d_name[0] != '.')
				line(d->d_name);
			off += d->d_reclen;
		}
	}
	close(fd);
}

static int run_workload(const char *name);

static int run_shell(void)
{
	static char buf[256];
	line("ferry shell: type `help`");
	for (;;) {
		puts_("ferry$ ");
		flush();
		long len = 0;
		for (;;) {
			ssize_t n = read(0, buf + len, 1);
			if (n <= 0) {
				sleep_ns(100000000UL);   /* no console input: don't spin */
				continue;
			}
			if (buf[len] == '\n' || buf[len] == '\r')
				break;
			if (len < (long)sizeof(buf) - 1)
				len++;
		}
		buf[len] = 0;
		char *cmd = buf, *arg;
		while (*cmd == ' ')
			cmd++;
		for (arg = cmd; *arg && *arg != ' '; arg++)
			;
		if (*arg)
			*arg++ = 0;
		while (*arg == ' ')
			arg++;

		if (!*cmd)
			continue;
		else if (!strcmp(cmd, "help"))
			line("commands: echo TEXT, cat FILE, ls [DIR], uptime, meminfo, "
			     "cmdline, run WORKLOAD (idle|kvstore|dirty|kvserver|disk; does not return), "
			     "poweroff");
		else if (!strcmp(cmd, "echo"))
			line(arg);
		else if (!strcmp(cmd, "cat"))
			cat(arg);
		else if (!strcmp(cmd, "ls"))
			ls(*arg ? arg : "/");
		else if (!strcmp(cmd, "uptime"))
			cat("/proc/uptime");
		else if (!strcmp(cmd, "meminfo"))
			cat("/proc/meminfo");
		else if (!strcmp(cmd, "cmdline"))
			cat("/proc/cmdline");
		else if (!strcmp(cmd, "run"))
			return run_workload(arg);
		else if (!strcmp(cmd, "poweroff"))
			power_off();
		else {
			puts_(cmd);
			line(": unknown command (try `help`)");
		}
	}
}

/* ------------------------------------------------------------ main */

static int run_workload(const char *name)
{
	if (!strcmp(name, "idle"))
		return run_idle();
	if (!strcmp(name, "kvstore"))
		return run_kvstore();
	if (!strcmp(name, "dirty"))
		return run_dirty();
	if (!strcmp(name, "kvserver"))
		return run_kvserver();
	if (!strcmp(name, "disk"))
		return run_disk();
	if (!strcmp(name, "shell"))
		return run_shell();
	puts_("ferry-init: unknown workload ");
	line(name);
	return run_shell();
}

int main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	/* The directories and /dev/console come from the initramfs. */
	mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, 0);
	mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, 0);
	mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, 0);

	if (slurp("/proc/cmdline", cmdline, sizeof(cmdline)) < 0)
		cmdline[0] = 0;
	char workload[32];
	if (!param("workload", workload, sizeof(workload)) || !workload[0])
		strcpy(workload, "shell");

	/* ferry.timing=1: also report the time and instret CSRs at ready (QEMU
	 * under -icount counts instructions in both; see qemu-boot.sh). */
	uint64_t t_ready, i_ready;
	__asm__ volatile("rdtime %0" : "=r"(t_ready));
	__asm__ volatile("rdinstret %0" : "=r"(i_ready));
	line("ferry-init: ready");
	if (param_u64("timing", 0)) {
		puts_("ferry-init: timing time ");
		putu(t_ready);
		puts_(" instret ");
		putu(i_ready);
		putch('\n');
		flush();
	}
	int rc = run_workload(workload);
	puts_("ferry-init: workload exited ");
	putu(rc);
	putch('\n');
	flush();
	power_off();
	return 0;
}
