/* Faster memcmp, bcmp and memcpy for the static musl builds
 * (scripts/build-static; docs/deployment.md, "musl: memcmp and memcpy").
 *
 * musl's memcmp compares one byte at a time, and its bcmp calls memcmp;
 * Rust's slice and string equality (`==` on [u8] and str) and SQLite's
 * b-tree key comparisons call them. musl's x86_64 memcpy starts a
 * `rep movsq` for every copy of 8 bytes or more, slow for the short
 * copies Rust code makes all the time. These replace them at link time:
 * scripts/build-static (x86_64 only) compiles this file with -O2
 * -fno-tree-loop-distribute-patterns (so that the compiler does not turn
 * the loops back into calls to these very functions) into a static
 * library that rustc links before libc.a, whose members for these names
 * are then not needed. Portable C, baseline x86-64 only; `rep movsb` for
 * long copies (fast on x86-64 processors made since 2012, ERMSB).
 */
#include <stddef.h>
#include <stdint.h>

static inline uint64_t load64(const unsigned char *p)
{
	uint64_t v;
	__builtin_memcpy(&v, p, 8);
	return v;
}

static inline void store64(unsigned char *p, uint64_t v)
{
	__builtin_memcpy(p, &v, 8);
}

static inline uint32_t load32(const unsigned char *p)
{
	uint32_t v;
	__builtin_memcpy(&v, p, 4);
	return v;
}

static inline void store32(unsigned char *p, uint32_t v)
{
	__builtin_memcpy(p, &v, 4);
}

int memcmp(const void *vl, const void *vr, size_t n)
{
	const unsigned char *l = vl, *r = vr;
	while (n >= 8) {
		uint64_t a = load64(l), b = load64(r);
		if (a != b) {
			/* The first differing byte decides: compare big-endian. */
			a = __builtin_bswap64(a);
			b = __builtin_bswap64(b);
			return a < b ? -1 : 1;
		}
		l += 8;
		r += 8;
		n -= 8;
	}
	for (; n; n--, l++, r++)
		if (*l != *r)
			return *l - *r;
	return 0;
}

int bcmp(const void *vl, const void *vr, size_t n)
{
	const unsigned char *l = vl, *r = vr;
	if (n >= 8) {
		while (n > 8) {
			if (load64(l) != load64(r))
				return 1;
			l += 8;
			r += 8;
			n -= 8;
		}
		/* The last 8 bytes, overlapping what was compared. */
		return load64(l + n - 8) != load64(r + n - 8);
	}
	if (n >= 4)
		return (load32(l) != load32(r)) | (load32(l + n - 4) != load32(r + n - 4));
	for (; n; n--, l++, r++)
		if (*l != *r)
			return 1;
	return 0;
}

/* A forward copy: correct for memcpy, and for memmove when the
 * destination lies before an overlapping source (each block is read
 * before anything after it is written; the last 16 bytes are read first;
 * `rep movsb` copies forwards). */
static void *copy_forward(void *vd, const void *vs, size_t n)
{
	unsigned char *d = vd;
	const unsigned char *s = vs;
	if (n <= 16) {
		if (n >= 8) {
			uint64_t a = load64(s), b = load64(s + n - 8);
			store64(d, a);
			store64(d + n - 8, b);
		} else if (n >= 4) {
			uint32_t a = load32(s), b = load32(s + n - 4);
			store32(d, a);
			store32(d + n - 4, b);
		} else if (n) {
			unsigned char a = s[0], b = s[n / 2], c = s[n - 1];
			d[0] = a;
			d[n / 2] = b;
			d[n - 1] = c;
		}
		return vd;
	}
	if (n <= 256) {
		/* 16 bytes a step, the last 16 overlapping. */
		uint64_t ta = load64(s + n - 16), tb = load64(s + n - 8);
		unsigned char *end = d + n - 16;
		while (d < end) {
			uint64_t a = load64(s), b = load64(s + 8);
			store64(d, a);
			store64(d + 8, b);
			d += 16;
			s += 16;
		}
		store64(end, ta);
		store64(end + 8, tb);
		return vd;
	}
	/* Long copies: the processor's string copy (fast on every x86-64
	 * made since 2012, ERMSB). */
	__asm__ __volatile__("rep movsb"
			     : "+D"(d), "+S"(s), "+c"(n)
			     :
			     : "memory");
	return vd;
}

void *memcpy(void *restrict d, const void *restrict s, size_t n)
{
	return copy_forward(d, s, n);
}

/* musl's memmove (x86_64) copies forwards through __memcpy_fwd, which its
 * memcpy.s defines too (so it would be linked in, and its memcpy clash
 * with the one above). */
void *__memcpy_fwd(void *d, const void *s, size_t n);
void *__memcpy_fwd(void *d, const void *s, size_t n)
{
	return copy_forward(d, s, n);
}
