/*
 * ec_platform.h - the small layer between a generated model and the board.
 *
 * The model code only needs a timer (ec_timer_now) for its per-layer probe.
 * The harness (main.c) also needs a character sink, an exit, and - when run
 * under an emulator or a debugger - a way to read and write host files.
 *
 * ec_putc, ec_timer_now, ec_timer_unit and ec_board_init are weak: on a real
 * board, define your own (a UART transmit, your clock set-up) in any .c file
 * and the linker takes yours.
 */
#ifndef EC_PLATFORM_H
#define EC_PLATFORM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Board set-up before anything else runs (clocks, UART).  Default: nothing. */
void ec_board_init(void);

/* Start the timer; call once before the first ec_timer_now(). */
void ec_timer_init(void);

/*
 * A free-running 32-bit tick count; differences of two readings are valid
 * across wrap-around.  The unit is ec_timer_unit():
 *   "cycles"  - DWT CYCCNT (Cortex-M3/M4/M7 on silicon)
 *   "systick" - SysTick ticks, extended to 32 bits (Cortex-M0, or when DWT
 *               does not count, e.g. under QEMU)
 *   "ns"      - host build, CLOCK_MONOTONIC nanoseconds
 */
uint32_t ec_timer_now(void);
const char *ec_timer_unit(void);

/* Character output (semihosting console, UART, or host stdout). */
void ec_putc(char c);
void ec_puts(const char *s);
void ec_put_u32(uint32_t v);

/* End the program with an exit code (semihosting exit, or stop the core). */
void ec_exit(int code) __attribute__((noreturn));

/*
 * Host files, for the emulated harness: semihosting on Cortex-M, stdio on the
 * host.  Handles are >= 0; -1 means failure.  ec_file_read/ec_file_write
 * return the number of bytes transferred.
 */
int ec_file_open(const char *path, int for_writing);
long ec_file_size(int handle);
size_t ec_file_read(int handle, void *buf, size_t len);
size_t ec_file_write(int handle, const void *buf, size_t len);
void ec_file_close(int handle);

/* 1 when host files are available (semihosting enabled or host build). */
int ec_has_host_files(void);

/* Current stack pointer and the stack region [ec_stack_limit, SP]. */
uintptr_t ec_stack_pointer(void);
uintptr_t ec_stack_limit(void);

#ifdef __cplusplus
}
#endif

#endif /* EC_PLATFORM_H */
