/*
 * main.c - the edgecomp harness: run a compiled model on inputs from the host
 * and report its latency and stack use.
 *
 * With host files (semihosting under QEMU or a debugger, or the host build):
 *   reads ec_input.bin  = N samples, each every input in turn (ec_input_bytes[i] bytes each),
 *   writes ec_output.bin = N results, each every output in turn (ec_output_bytes[i] bytes each),
 * in the current directory of the emulator (host build: argv[1], argv[2]).
 * Without them (a board on its own) it runs one inference on a zero input.
 *
 * The first inference is measured and reported as probe lines:
 *   @ec begin model=<name> layers=<n> unit=<unit>
 *   @ec layer <index> <ticks>     (built with -DEC_PROBE)
 *   @ec total <ticks>
 *   @ec stack <bytes>             (stack used by ec_invoke, painted and scanned)
 *   @ec end
 */
#include <stdint.h>
#include <string.h>

#include "ec_platform.h"
#include "model.h"

#ifndef EC_HARNESS_NAME
#define EC_HARNESS_NAME "model"
#endif

#define INPUT_FILE "ec_input.bin"
#define OUTPUT_FILE "ec_output.bin"
#define STACK_PAINT 0xC5A5C5A5u

#ifndef EC_NUM_INPUTS /* a model of one input and one output: its model.h names them ec_input / ec_output */
#define EC_NUM_INPUTS 1
#define EC_NUM_OUTPUTS 1
static const uint32_t ec_input_bytes[1] = {EC_INPUT_SIZE * sizeof(ec_in_t)};
static const uint32_t ec_output_bytes[1] = {EC_OUTPUT_SIZE * sizeof(ec_out_t)};
static void *ec_input_at(int i)
{
    (void)i;
    return ec_input();
}
static const void *ec_output_at(int i)
{
    (void)i;
    return ec_output();
}
#endif

static uint32_t first_ticks;
static uint32_t first_stack_bytes;

static void fail(const char *what, const char *detail)
{
    ec_puts("@ec error ");
    ec_puts(what);
    ec_puts(detail);
    ec_putc('\n');
    ec_exit(2);
}

/* Fill the unused stack, from its lowest address up to the caller's SP. */
static __attribute__((noinline)) void paint_stack(void)
{
    uint32_t *word = (uint32_t *)((ec_stack_limit() + 3u) & ~(uintptr_t)3u);
    uint32_t *top = (uint32_t *)(ec_stack_pointer() & ~(uintptr_t)3u);
    while (word < top)
        *(volatile uint32_t *)word++ = STACK_PAINT;
}

/* Bytes between `top` and the deepest word that lost its paint. */
static uint32_t stack_used_below(uintptr_t top)
{
    const uint32_t *word = (const uint32_t *)((ec_stack_limit() + 3u) & ~(uintptr_t)3u);
    while ((uintptr_t)word < top && *(volatile const uint32_t *)word == STACK_PAINT)
        word++;
    return (uint32_t)(top - (uintptr_t)word);
}

/* The first inference: timed, probed, and its stack measured. */
static int measured_invoke(void)
{
    uintptr_t top = ec_stack_pointer();
    paint_stack();
    uint32_t start = ec_timer_now();
    int status = ec_invoke();
    first_ticks = ec_timer_now() - start;
    first_stack_bytes = stack_used_below(top);
    return status;
}

static void report(void)
{
    ec_puts("@ec begin model=" EC_HARNESS_NAME " layers=");
    ec_put_u32(EC_NUM_LAYERS);
    ec_puts(" unit=");
    ec_puts(ec_timer_unit());
    ec_putc('\n');
#ifdef EC_PROBE
    for (uint32_t i = 0; i < EC_NUM_LAYERS; i++) {
        ec_puts("@ec layer ");
        ec_put_u32(i);
        ec_putc(' ');
        ec_put_u32(ec_layer_ticks[i]);
        ec_putc('\n');
    }
#endif
    ec_puts("@ec total ");
    ec_put_u32(first_ticks);
    ec_puts("\n@ec stack ");
    ec_put_u32(first_stack_bytes);
    ec_putc('\n');
}

static int run_files(const char *input_path, const char *output_path)
{
    int in = ec_file_open(input_path, 0);
    if (in < 0)
        fail("cannot open ", input_path);
    unsigned long sample_bytes = 0;
    for (int i = 0; i < EC_NUM_INPUTS; i++)
        sample_bytes += ec_input_bytes[i];
    long size = ec_file_size(in);
    if (size <= 0 || (unsigned long)size % sample_bytes != 0)
        fail("input size is not a multiple of the model input: ", input_path);
    int out = ec_file_open(output_path, 1);
    if (out < 0)
        fail("cannot create ", output_path);

    unsigned long count = (unsigned long)size / sample_bytes;
    for (unsigned long n = 0; n < count; n++) {
        for (int i = 0; i < EC_NUM_INPUTS; i++)
            if (ec_file_read(in, ec_input_at(i), ec_input_bytes[i]) != ec_input_bytes[i])
                fail("short read from ", input_path);
        int status = n == 0 ? measured_invoke() : ec_invoke();
        if (status != 0)
            fail("ec_invoke failed", "");
        if (n == 0)
            report();
        for (int i = 0; i < EC_NUM_OUTPUTS; i++)
            if (ec_file_write(out, ec_output_at(i), ec_output_bytes[i]) != ec_output_bytes[i])
                fail("short write to ", output_path);
    }
    ec_file_close(out);
    ec_file_close(in);
    ec_puts("@ec end\n");
    return 0;
}

#ifdef EC_HOST
int main(int argc, char **argv)
{
    ec_timer_init();
    return run_files(argc > 1 ? argv[1] : INPUT_FILE, argc > 2 ? argv[2] : OUTPUT_FILE);
}
#else
int main(void)
{
    ec_timer_init();
    if (ec_has_host_files())
        return run_files(INPUT_FILE, OUTPUT_FILE);

    /* On its own: one inference on a zero input, probe lines to ec_putc. */
    for (int i = 0; i < EC_NUM_INPUTS; i++)
        memset(ec_input_at(i), 0, ec_input_bytes[i]);
    if (measured_invoke() != 0)
        fail("ec_invoke failed", "");
    report();
    ec_puts("@ec end\n");
    return 0;
}
#endif
