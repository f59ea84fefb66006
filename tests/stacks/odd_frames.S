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

    .section .note.GNU-stack,"",@progbits
