/* Frames the unwind tables do not describe (tests/stacks/odd.c).

   odd_data_word_alloc(n): pushes the address of odd_data_word, a data
   object, without telling the unwind tables, then calls malloc(n): where
   the tables put this frame's return address the walk finds that data
   pointer. It is not a return address and must not be recorded as a frame
   (the walk ends before it). */
    .data
    .globl odd_data_word
    .type odd_data_word, @object
    .size odd_data_word, 64
    .align 16
odd_data_word:
    .zero 64

    .text
    .globl odd_data_word_alloc
    .type odd_data_word_alloc, @function
odd_data_word_alloc:
    .cfi_startproc
    leaq odd_data_word+16(%rip), %rax
    pushq %rax                      /* no .cfi_adjust_cfa_offset: the tables lie */
    call malloc@PLT
    addq $8, %rsp
    ret
    .cfi_endproc
    .size odd_data_word_alloc, .-odd_data_word_alloc

/* odd_call_on(top, fn): calls fn with rsp switched to top, the end of a
   stack of the caller's own, as inline assembly that runs a function on
   another stack does; the tables still describe this frame as on the
   thread's stack (a CFA 240 bytes above rsp), so from fn's return address
   in here they put the caller's return address past the end of that
   stack, where nothing may be mapped. */
    .text
    .globl odd_call_on
    .type odd_call_on, @function
odd_call_on:
    .cfi_startproc
    pushq %rbx
    .cfi_def_cfa_offset 16
    .cfi_offset rbx, -16
    subq $224, %rsp
    .cfi_def_cfa_offset 240
    movq %rsp, %rbx
    movq %rdi, %rsp                 /* no CFI: the tables lie from here */
    call *%rsi
    movq %rbx, %rsp
    addq $224, %rsp
    .cfi_def_cfa_offset 16
    popq %rbx
    .cfi_def_cfa_offset 8
    ret
    .cfi_endproc
    .size odd_call_on, .-odd_call_on

/* odd_garbage_rbp_alloc(n, g): malloc(n) with rbp holding g (any value:
   0, an unmapped address, a pointer into the stack), as code built
   without frame pointers may leave it; the tables say where rbp was
   saved, so the frames above still find their own. */
    .text
    .globl odd_garbage_rbp_alloc
    .type odd_garbage_rbp_alloc, @function
odd_garbage_rbp_alloc:
    .cfi_startproc
    pushq %rbp
    .cfi_def_cfa_offset 16
    .cfi_offset rbp, -16
    movq %rsi, %rbp
    call malloc@PLT
    popq %rbp
    .cfi_def_cfa_offset 8
    ret
    .cfi_endproc
    .size odd_garbage_rbp_alloc, .-odd_garbage_rbp_alloc

    .section .note.GNU-stack,"",@progbits
