# mk/stack.mk -- whole call stacks (csrc/stack/): captured with libunwind,
# which the interposer links (see mk/preload.mk and docs/preload.md).
SYS_PACKAGES += libunwind-dev
