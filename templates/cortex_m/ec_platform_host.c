/*
 * ec_platform_host.c - the platform layer for a native (host gcc) build of
 * the same model and harness: CLOCK_MONOTONIC nanoseconds, stdio, files.
 */
#define _POSIX_C_SOURCE 199309L
#include "ec_platform.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define MAX_FILES 8
#define HOST_STACK_PAINT_BYTES (256u * 1024u)

static FILE *files[MAX_FILES];
static uintptr_t stack_base;

void ec_board_init(void)
{
}

void ec_timer_init(void)
{
    stack_base = ec_stack_pointer();
    /* Resolve clock_gettime now: lazy binding would add its stack to the first inference. */
    (void)ec_timer_now();
}

uint32_t ec_timer_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
}

const char *ec_timer_unit(void)
{
    return "ns";
}

void ec_putc(char c)
{
    putchar(c);
    if (c == '\n')
        fflush(stdout);
}

void ec_puts(const char *s)
{
    while (*s)
        ec_putc(*s++);
}

void ec_put_u32(uint32_t v)
{
    printf("%lu", (unsigned long)v);
}

void ec_exit(int code)
{
    fflush(stdout);
    exit(code);
}

int ec_has_host_files(void)
{
    return 1;
}

int ec_file_open(const char *path, int for_writing)
{
    for (int h = 0; h < MAX_FILES; h++) {
        if (!files[h]) {
            files[h] = fopen(path, for_writing ? "wb" : "rb");
            return files[h] ? h : -1;
        }
    }
    return -1;
}

long ec_file_size(int handle)
{
    FILE *f = files[handle];
    long here = ftell(f);
    if (fseek(f, 0, SEEK_END) != 0)
        return -1;
    long size = ftell(f);
    fseek(f, here, SEEK_SET);
    return size;
}

size_t ec_file_read(int handle, void *buf, size_t len)
{
    return fread(buf, 1, len, files[handle]);
}

size_t ec_file_write(int handle, const void *buf, size_t len)
{
    return fwrite(buf, 1, len, files[handle]);
}

void ec_file_close(int handle)
{
    fclose(files[handle]);
    files[handle] = NULL;
}

uintptr_t ec_stack_pointer(void)
{
    return (uintptr_t)__builtin_frame_address(0);
}

uintptr_t ec_stack_limit(void)
{
    /* The host stack grows on demand; paint a fixed window below main(). */
    return stack_base - HOST_STACK_PAINT_BYTES;
}
