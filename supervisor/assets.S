/*
 * assets: files the memvisor binary carries, embedded at build time with the assembler's
 * .incbin (no generator, no extra tool): uPlot (third_party/uplot, MIT) and the HTML report's
 * own script and style (supervisor/html). Each is followed by a NUL, so C reads it as a
 * string. Paths are relative to the repository root (the Makefile passes -Wa,-I.).
 */
/* A section of their own, not .rodata: only `memvisor report --html` reads them. In .rodata
 * they sat between the strings and tables a run reads, and the kernel maps a file's pages up to
 * 64 KiB around each one touched (fault-around), so every run mapped most of them too (~64
 * KiB resident, bench/footprint). supervisor/layout.ld puts the section after the unwind
 * tables (.eh_frame, ~90 KiB that a C program reads only to unwind): what a run reads stays
 * that far from them. */
    .section mv_assets, "a"
    .balign 16

    .global mv_asset_uplot_js
mv_asset_uplot_js:
    .incbin "third_party/uplot/uPlot.iife.min.js"
    .byte 0

    .global mv_asset_uplot_css
mv_asset_uplot_css:
    .incbin "third_party/uplot/uPlot.min.css"
    .byte 0

    .global mv_asset_page_js
mv_asset_page_js:
    .incbin "supervisor/html/report.js"
    .byte 0

    .global mv_asset_page_css
mv_asset_page_css:
    .incbin "supervisor/html/report.css"
    .byte 0

/* No executable stack: this object must not make the linker ask for one. */
    .section .note.GNU-stack,"",@progbits
