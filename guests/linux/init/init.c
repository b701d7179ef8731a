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
 *   disk     block I/O on /dev/vda (O_DIRECT, so every request reaches the
 *            device): ferry.disk_mib= (default 4) of raw blocks, pass after
 *            pass (ferry.passes=, 0 = forever): read each 64 KiB chunk and
 *            check it holds the previous pass's pattern, write this pass's,
 *            fsync (a FLUSH), re-read and check everything, and print
 *            "disk pass N sum 0xS"; ferry.read_mib=N first reads N MiB
 *            sequentially in 1 MiB requests and prints the rate
 *            ("disk: read N MiB in U us, R MB/s"; time, so not deterministic)
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
	static const char *const keys[] = { "disk_mib", "passes", "read_mib" };
	uint64_t cfg[3] = { param_u64("disk_mib", 4), param_u64("passes", 0), param_u64("read_mib", 0) };
	print_cfg("disk", keys, cfg, 3);
	uint64_t bytes = cfg[0] * MIB, passes = cfg[1], read_mib = cfg[2];

	int fd = open("/dev/vda", O_RDWR | O_DIRECT, 0);
	if (fd < 0) {
		line("disk: cannot open /dev/vda");
		return 2;
	}
	uint64_t size = 0;
	if (ioctl(fd, BLKGETSIZE64_, &size) < 0 || size < DISK_CHUNK) {
		line("disk: /dev/vda has no usable size");
		return 2;
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
			     "cmdline, run WORKLOAD (idle|kvstore|dirty|disk; does not return), "
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
