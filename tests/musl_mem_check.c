/* Checks scripts/musl-mem.c (the memcmp, bcmp and memcpy linked into the
 * static x86_64 build) against plain byte-loop references.
 * tests/test_musl_mem.py compiles scripts/musl-mem.c with the flags of
 * scripts/build-static, links it into this program as build-static links
 * it into mailgate (a whole static archive, before musl's libc.a), and
 * runs it.
 *
 *   musl_mem_check SEED
 *
 * Prints each failure (at most 50) and a last line
 * "musl-mem: N passed, M failed"; exits 0 only when nothing failed.
 *
 * Covered: every length 0..300 and large ones (up to 1 MiB + 3), both
 * pointers at several alignments; memcmp on equal data and with a first
 * difference at every position (every one for lengths up to 100, the
 * edges of the 4- and 8-byte words and random ones beyond), the byte
 * pairs that catch a signed comparison (0x00/0xff, 0x7f/0x80, ...) and a
 * later difference the other way that must not decide; bcmp zero exactly
 * when equal; memcpy exact, returning its destination, nothing written
 * outside, the source untouched (no overlap: not allowed for memcpy);
 * memmove with overlaps both ways, since musl's memmove copies forwards
 * through __memcpy_fwd, which musl-mem.c replaces too.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int bcmp(const void *, const void *, size_t);

/* Called through volatile pointers: the compiler must emit real calls to
 * the linked functions, not expand them inline. */
static int (*volatile t_memcmp)(const void *, const void *, size_t) = memcmp;
static int (*volatile t_bcmp)(const void *, const void *, size_t) = bcmp;
static void *(*volatile t_memcpy)(void *restrict, const void *restrict, size_t) = memcpy;
static void *(*volatile t_memmove)(void *, const void *, size_t) = memmove;

/* The references: byte loops (this file is built with -fno-builtin
 * -fno-tree-loop-distribute-patterns, so they stay loops). */
static int ref_memcmp(const unsigned char *a, const unsigned char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (a[i] != b[i])
			return a[i] < b[i] ? -1 : 1;
	return 0;
}

static void ref_copy(unsigned char *d, const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		d[i] = s[i];
}

static void ref_set(unsigned char *d, unsigned char c, size_t n)
{
	for (size_t i = 0; i < n; i++)
		d[i] = c;
}

static int sign(int x)
{
	return (x > 0) - (x < 0);
}

static uint64_t rng_state;

static uint64_t rnd(void)
{
	/* xorshift64* */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1DULL;
}

static void fill(unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)rnd();
}

static unsigned long passed, failed;

#define CHECK(cond, ...)                                                  \
	do {                                                              \
		if (cond) {                                               \
			passed++;                                         \
		} else {                                                  \
			if (failed < 50) {                                \
				printf("FAIL %s:%d: ", __func__, __LINE__); \
				printf(__VA_ARGS__);                      \
				printf("\n");                             \
			}                                                 \
			failed++;                                         \
		}                                                         \
	} while (0)

static const size_t big_lens[] = {
	301, 511, 512, 513, 1000, 4095, 4096, 4097, 65536 + 7, (1u << 20) + 3,
};
#define NBIG (sizeof big_lens / sizeof big_lens[0])
#define MAXLEN ((1u << 20) + 3)
/* room for alignment offsets and guard bytes on both sides */
#define PAD 64
/* where check_memmove_len puts its source */
#define MOVE_OFF (PAD + 257)
static const size_t aligns[] = {0, 1, 3, 4, 7, 8, 9, 15};
#define NALIGN (sizeof aligns / sizeof aligns[0])

static unsigned char *buf_a, *buf_b, *buf_c;

/* The byte pairs (a, b) that tell a signed from an unsigned comparison
 * (0x80..0xff are negative as signed char), then a random distinct pair. */
static const unsigned char pairs[][2] = {
	{0x00, 0xff}, {0xff, 0x00}, {0x7f, 0x80}, {0x80, 0x7f},
	{0x01, 0xfe}, {0xfe, 0xff}, {0x00, 0x01}, {0x01, 0x00},
};
#define NPAIRS (sizeof pairs / sizeof pairs[0])

/* Alignment pairs tried: all up to 300 bytes, three beyond. */
static int use_aligns(size_t n, size_t i, size_t j)
{
	if (n <= 300)
		return 1;
	return (i == 0 && j == 0) || (i == 1 && j == 4) || (i == 5 && j == 2);
}

static void memcmp_at(unsigned char *a, unsigned char *b, size_t n, size_t k)
{
	/* beyond 4 KiB: the first pair (0x00/0xff), its reverse and a random one */
	size_t npairs = n > 4096 ? 2 : NPAIRS;
	/* b equals a except at k (the first difference) and, when there is
	 * room, at a later position with the opposite order: only k decides. */
	for (size_t p = 0; p <= npairs; p++) {
		ref_copy(b, a, n);
		unsigned char x, y;
		if (p < npairs) {
			x = pairs[p][0];
			y = pairs[p][1];
		} else {
			x = (unsigned char)rnd();
			do
				y = (unsigned char)rnd();
			while (y == x);
		}
		a[k] = x;
		b[k] = y;
		size_t later = n;
		unsigned char save_later = 0;
		if (k + 1 < n) {
			later = k + 1 + rnd() % (n - k - 1);
			save_later = a[later];
			/* the opposite order at `later` */
			if (x < y) {
				a[later] = 0xff;
				b[later] = 0x00;
			} else {
				a[later] = 0x00;
				b[later] = 0xff;
			}
		}
		int want = ref_memcmp(a, b, n);
		int got = t_memcmp(a, b, n);
		CHECK(sign(got) == want && want != 0,
		      "memcmp n=%zu first difference at %zu (%02x vs %02x): got %d, want sign %d",
		      n, k, x, y, got, want);
		int got_rev = t_memcmp(b, a, n);
		CHECK(sign(got_rev) == -want, "memcmp reversed n=%zu k=%zu: got %d, want sign %d",
		      n, k, got_rev, -want);
		CHECK(t_bcmp(a, b, n) != 0, "bcmp n=%zu difference at %zu: got 0", n, k);
		if (later < n) {
			/* only the later difference: still unequal */
			b[k] = a[k];
			CHECK(sign(t_memcmp(a, b, n)) == ref_memcmp(a, b, n),
			      "memcmp n=%zu only difference at %zu", n, later);
			CHECK(t_bcmp(a, b, n) != 0, "bcmp n=%zu only difference at %zu", n, later);
			a[later] = save_later;
		}
	}
	ref_copy(b, a, n);
}

static void check_memcmp_len(size_t n)
{
	for (size_t ia = 0; ia < NALIGN; ia++) {
		for (size_t ib = 0; ib < NALIGN; ib++) {
			if (!use_aligns(n, ia, ib))
				continue;
			unsigned char *a = buf_a + PAD + aligns[ia];
			unsigned char *b = buf_b + PAD + aligns[ib];
			fill(a, n);
			ref_copy(b, a, n);
			CHECK(t_memcmp(a, b, n) == 0, "memcmp equal n=%zu align %zu/%zu", n,
			      aligns[ia], aligns[ib]);
			CHECK(t_bcmp(a, b, n) == 0, "bcmp equal n=%zu align %zu/%zu", n, aligns[ia],
			      aligns[ib]);
			/* bytes outside [0, n) differ, and must not be looked at */
			a[-1] = 1, b[-1] = 2, a[n] = 3, b[n] = 4;
			CHECK(t_memcmp(a, b, n) == 0 && t_bcmp(a, b, n) == 0,
			      "equal n=%zu with different bytes just outside", n);
			if (n == 0)
				continue;
			if (n <= 100) {
				for (size_t k = 0; k < n; k++)
					memcmp_at(a, b, n, k);
			} else {
				size_t ks[] = {0,     1,     3,     4,     7,     8,     9,
					       n / 2, n - 9, n - 8, n - 5, n - 4, n - 2, n - 1};
				for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++)
					memcmp_at(a, b, n, ks[i]);
				for (int i = 0; i < 8; i++)
					memcmp_at(a, b, n, rnd() % n);
			}
		}
	}
}

static void check_memcpy_len(size_t n)
{
	/* the window looked at: the copy and PAD bytes either side */
	size_t win = n + 2 * PAD;
	for (size_t is = 0; is < NALIGN; is++) {
		for (size_t id = 0; id < NALIGN; id++) {
			if (!use_aligns(n, is, id))
				continue;
			unsigned char *s = buf_a + PAD + aligns[is];
			unsigned char *d = buf_b + PAD + aligns[id];
			fill(buf_a, win);
			ref_set(buf_b, 0xa5, win);
			ref_copy(buf_c, s, n); /* the source as it was */
			void *r = t_memcpy(d, s, n);
			CHECK(r == d, "memcpy n=%zu returned %p, not the destination %p", n, r,
			      (void *)d);
			CHECK(ref_memcmp(d, buf_c, n) == 0, "memcpy n=%zu align %zu/%zu: wrong bytes",
			      n, aligns[is], aligns[id]);
			CHECK(ref_memcmp(s, buf_c, n) == 0, "memcpy n=%zu changed its source", n);
			int guard_ok = 1;
			for (unsigned char *p = buf_b; p < d; p++)
				guard_ok &= *p == 0xa5;
			for (unsigned char *p = d + n; p < buf_b + win; p++)
				guard_ok &= *p == 0xa5;
			CHECK(guard_ok, "memcpy n=%zu align %zu/%zu wrote outside the destination", n,
			      aligns[is], aligns[id]);
		}
	}
}

static void check_memmove_len(size_t n)
{
	static const long shifts[] = {-257, -33, -17, -16, -9, -8, -3, -1,
				      1,    3,   8,   9,   16,  17, 33, 257};
	/* the window looked at: the source at MOVE_OFF, the destination up
	 * to 257 bytes either way, PAD bytes beyond */
	size_t win = MOVE_OFF + n + 257 + PAD;
	for (size_t i = 0; i < sizeof shifts / sizeof shifts[0]; i++) {
		long sh = shifts[i];
		size_t so = MOVE_OFF, dof = (size_t)((long)MOVE_OFF + sh);
		fill(buf_a, win);
		/* the expected result, from the untouched original in buf_b */
		ref_copy(buf_b, buf_a, win);
		ref_copy(buf_c, buf_b, win);
		ref_copy(buf_c + dof, buf_b + so, n);
		void *r = t_memmove(buf_a + dof, buf_a + so, n);
		CHECK(r == buf_a + dof, "memmove n=%zu shift %ld: wrong return value", n, sh);
		CHECK(ref_memcmp(buf_a, buf_c, win) == 0, "memmove n=%zu shift %ld: wrong bytes", n,
		      sh);
	}
}

int main(int argc, char **argv)
{
	rng_state = argc > 1 ? strtoull(argv[1], NULL, 10) : 1;
	if (rng_state == 0)
		rng_state = 1;
	size_t size = MAXLEN + 2 * PAD + 2 * 257 + PAD;
	buf_a = malloc(size);
	buf_b = malloc(size);
	buf_c = malloc(size);
	if (!buf_a || !buf_b || !buf_c) {
		puts("out of memory");
		return 2;
	}
	for (size_t n = 0; n <= 300; n++) {
		check_memcmp_len(n);
		check_memcpy_len(n);
		check_memmove_len(n);
	}
	for (size_t i = 0; i < NBIG; i++) {
		check_memcmp_len(big_lens[i]);
		check_memcpy_len(big_lens[i]);
		check_memmove_len(big_lens[i]);
	}
	printf("musl-mem: %lu passed, %lu failed\n", passed, failed);
	return failed ? 1 : 0;
}
