/*
 * ec_platform.c - Cortex-M platform layer: timer, console, host files, exit.
 *
 * Timer: DWT CYCCNT when the core has one and it really counts (silicon
 * Cortex-M3/M4/M7); otherwise SysTick clocked from the core, extended to 32
 * bits by counting wrap-arounds in SysTick_Handler.  QEMU does not model the
 * DWT cycle counter, so emulated runs use SysTick; with -icount shift=0 the
 * SysTick count is a deterministic function of executed instructions.
 *
 * Console and files: ARM semihosting (BKPT 0xAB) when EC_SEMIHOSTING is 1.
 * Semihosting needs an emulator or an attached debugger - on a board running
 * on its own a BKPT would fault, so build with EC_SEMIHOSTING=0 there and
 * override ec_putc() with your UART.
 */
#include "ec_platform.h"

#ifndef EC_SEMIHOSTING
#define EC_SEMIHOSTING 1
#endif

#ifndef EC_TIMER_DWT
#define EC_TIMER_DWT 1
#endif

/* ARMv6-M (Cortex-M0/M0+) has no DWT cycle counter. */
#if defined(__ARM_ARCH_6M__) || defined(__ARM_ARCH_8M_BASE__)
#undef EC_TIMER_DWT
#define EC_TIMER_DWT 0
#endif

/* ---- core registers ------------------------------------------------------ */

#define REG32(addr) (*(volatile uint32_t *)(addr))

#define SYST_CSR   REG32(0xE000E010u)  /* SysTick control and status */
#define SYST_RVR   REG32(0xE000E014u)  /* SysTick reload value */
#define SYST_CVR   REG32(0xE000E018u)  /* SysTick current value */
#define SYST_CSR_ENABLE    (1u << 0)
#define SYST_CSR_TICKINT   (1u << 1)
#define SYST_CSR_CLKSOURCE (1u << 2)   /* 1 = processor clock */
#define SYST_MAX           0x00FFFFFFu /* 24-bit counter */

#define DEMCR      REG32(0xE000EDFCu)  /* debug exception and monitor control */
#define DWT_CTRL   REG32(0xE0001000u)
#define DWT_CYCCNT REG32(0xE0001004u)
#define DWT_LAR    REG32(0xE0001FB0u)  /* lock access (Cortex-M7 ships it locked) */
#define DWT_LAR_KEY         0xC5ACCE55u
#define DEMCR_TRCENA        (1u << 24)
#define DWT_CTRL_CYCCNTENA  (1u << 0)
#define DWT_CTRL_NOCYCCNT   (1u << 25)

/* ---- semihosting ----------------------------------------------------------- */

enum {
    SYS_OPEN = 0x01,
    SYS_CLOSE = 0x02,
    SYS_WRITEC = 0x03,
    SYS_WRITE = 0x05,
    SYS_READ = 0x06,
    SYS_FLEN = 0x0C,
    SYS_EXIT = 0x18,
    SYS_EXIT_EXTENDED = 0x20,
};

#define ADP_STOPPED_APPLICATION_EXIT 0x20026u

#if EC_SEMIHOSTING
static int semihost(int op, const void *arg)
{
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}
#endif

/* ---- board ------------------------------------------------------------------ */

__attribute__((weak)) void ec_board_init(void)
{
}

/* ---- timer ------------------------------------------------------------------ */

static volatile uint32_t systick_wraps;
static int use_dwt;

void SysTick_Handler(void);
void SysTick_Handler(void)
{
    systick_wraps++;
}

#if EC_TIMER_DWT
static int dwt_counts(void)
{
    DEMCR |= DEMCR_TRCENA; /* the DWT is only accessible with trace enabled */
#if defined(__ARM_ARCH_7EM__)
    DWT_LAR = DWT_LAR_KEY;
#endif
    if (DWT_CTRL & DWT_CTRL_NOCYCCNT)
        return 0;
    DWT_CYCCNT = 0;
    DWT_CTRL |= DWT_CTRL_CYCCNTENA;
    uint32_t first = DWT_CYCCNT;
    for (volatile int i = 0; i < 16; i++) {
    }
    return DWT_CYCCNT != first;
}
#endif

void ec_timer_init(void)
{
#if EC_TIMER_DWT
    use_dwt = dwt_counts();
    if (use_dwt)
        return;
#endif
    /*
     * Start counting without the interrupt and wait for the first reload, so
     * that the write of 0 to the current value cannot be taken for a wrap.
     */
    SYST_CSR = 0;
    SYST_RVR = SYST_MAX;
    SYST_CVR = 0;
    SYST_CSR = SYST_CSR_ENABLE | SYST_CSR_CLKSOURCE;
    while (SYST_CVR == 0) {
    }
    (void)SYST_CSR; /* reading clears COUNTFLAG */
    systick_wraps = 0;
    SYST_CSR = SYST_CSR_ENABLE | SYST_CSR_TICKINT | SYST_CSR_CLKSOURCE;
}

__attribute__((weak)) uint32_t ec_timer_now(void)
{
    if (use_dwt)
        return DWT_CYCCNT;
    /* SysTick counts down; read the wrap count and the counter consistently. */
    uint32_t wraps, value;
    do {
        wraps = systick_wraps;
        value = SYST_CVR;
    } while (wraps != systick_wraps);
    return (wraps << 24) + (SYST_MAX - value);
}

__attribute__((weak)) const char *ec_timer_unit(void)
{
    return use_dwt ? "cycles" : "systick";
}

/* ---- console ------------------------------------------------------------------ */

__attribute__((weak)) void ec_putc(char c)
{
#if EC_SEMIHOSTING
    semihost(SYS_WRITEC, &c);
#else
    (void)c;
#endif
}

void ec_puts(const char *s)
{
    while (*s)
        ec_putc(*s++);
}

void ec_put_u32(uint32_t v)
{
    char digits[10];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    while (n)
        ec_putc(digits[--n]);
}

void ec_exit(int code)
{
#if EC_SEMIHOSTING
    uint32_t block[2] = {ADP_STOPPED_APPLICATION_EXIT, (uint32_t)code};
    semihost(SYS_EXIT_EXTENDED, block);
    /* A host without the extension: plain exit (status 0 or 1 only). */
    semihost(SYS_EXIT, (const void *)(uintptr_t)(code ? 0x20024u : ADP_STOPPED_APPLICATION_EXIT));
#else
    (void)code;
#endif
    for (;;) {
        __asm__ volatile("wfi");
    }
}

/* ---- host files ------------------------------------------------------------------ */

int ec_has_host_files(void)
{
    return EC_SEMIHOSTING;
}

#if EC_SEMIHOSTING
static size_t length(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

int ec_file_open(const char *path, int for_writing)
{
    /* Semihosting open modes: 1 = "rb", 5 = "wb". */
    uint32_t block[3] = {(uint32_t)(uintptr_t)path, for_writing ? 5u : 1u, (uint32_t)length(path)};
    return semihost(SYS_OPEN, block);
}

long ec_file_size(int handle)
{
    uint32_t block[1] = {(uint32_t)handle};
    return semihost(SYS_FLEN, block);
}

size_t ec_file_read(int handle, void *buf, size_t len)
{
    /* SYS_READ returns the number of bytes *not* read. */
    uint32_t block[3] = {(uint32_t)handle, (uint32_t)(uintptr_t)buf, (uint32_t)len};
    return len - (size_t)semihost(SYS_READ, block);
}

size_t ec_file_write(int handle, const void *buf, size_t len)
{
    uint32_t block[3] = {(uint32_t)handle, (uint32_t)(uintptr_t)buf, (uint32_t)len};
    return len - (size_t)semihost(SYS_WRITE, block);
}

void ec_file_close(int handle)
{
    uint32_t block[1] = {(uint32_t)handle};
    semihost(SYS_CLOSE, block);
}
#else
int ec_file_open(const char *path, int for_writing)
{
    (void)path;
    (void)for_writing;
    return -1;
}

long ec_file_size(int handle)
{
    (void)handle;
    return -1;
}

size_t ec_file_read(int handle, void *buf, size_t len)
{
    (void)handle;
    (void)buf;
    (void)len;
    return 0;
}

size_t ec_file_write(int handle, const void *buf, size_t len)
{
    (void)handle;
    (void)buf;
    (void)len;
    return 0;
}

void ec_file_close(int handle)
{
    (void)handle;
}
#endif

/* ---- stack ------------------------------------------------------------------ */

extern uint32_t __stack_limit; /* from the linker script: lowest stack address */

uintptr_t ec_stack_pointer(void)
{
    uintptr_t sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    return sp;
}

uintptr_t ec_stack_limit(void)
{
    return (uintptr_t)&__stack_limit;
}
