/*
 * startup.c - vector table and reset handler for a bare-metal Cortex-M.
 *
 * Reset: enable the FPU (if the build uses one), copy .data from flash to RAM,
 * zero .bss, call ec_board_init() and main(), and exit with main's return
 * value.  Faults print one "@ec fault <kind>" line and exit with status 3, so
 * a crashing model is reported by the host instead of hanging.
 */
#include <stdint.h>

#include "ec_platform.h"

/* Symbols from the linker script. */
extern uint32_t __data_load;  /* .data image in flash */
extern uint32_t __data_start; /* .data in RAM */
extern uint32_t __data_end;
extern uint32_t __bss_start;
extern uint32_t __bss_end;
extern uint32_t __stack_top; /* initial stack pointer: end of RAM */

int main(void);

void Reset_Handler(void);
void NMI_Handler(void);
void HardFault_Handler(void);
void MemManage_Handler(void);
void BusFault_Handler(void);
void UsageFault_Handler(void);
void Unexpected_Handler(void);
void SysTick_Handler(void); /* in ec_platform.c */

#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)

void Reset_Handler(void)
{
#if defined(__ARM_FP)
    /* Full access to coprocessors 10 and 11 (the FPU) before any float code. */
    SCB_CPACR |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    const uint32_t *src = &__data_load;
    for (uint32_t *dst = &__data_start; dst < &__data_end;)
        *dst++ = *src++;
    for (uint32_t *dst = &__bss_start; dst < &__bss_end;)
        *dst++ = 0;

    ec_board_init();
    ec_exit(main());
}

static void fault(const char *kind)
{
    ec_puts("\n@ec fault ");
    ec_puts(kind);
    ec_putc('\n');
    ec_exit(3);
}

void NMI_Handler(void)
{
    fault("nmi");
}

void HardFault_Handler(void)
{
    fault("hardfault");
}

void MemManage_Handler(void)
{
    fault("memmanage");
}

void BusFault_Handler(void)
{
    fault("busfault");
}

void UsageFault_Handler(void)
{
    fault("usagefault");
}

void Unexpected_Handler(void)
{
    fault("unexpected-exception");
}

typedef void (*ec_vector_t)(void);

/* The core reads the initial SP and the reset address from here. */
__attribute__((section(".isr_vector"), used)) const ec_vector_t ec_vectors[16] = {
    (ec_vector_t)(uintptr_t)&__stack_top,
    Reset_Handler,
    NMI_Handler,
    HardFault_Handler,
    MemManage_Handler,
    BusFault_Handler,
    UsageFault_Handler,
    0,
    0,
    0,
    0,
    Unexpected_Handler, /* SVCall */
    Unexpected_Handler, /* DebugMonitor */
    0,
    Unexpected_Handler, /* PendSV */
    SysTick_Handler,
};
