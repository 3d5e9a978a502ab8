/* simd_undef.h - ends one pass of simd.h: forgets the vocabulary of that instruction set.
 * Internal to core/ (simd.h includes it after each pass of the template). */
#undef VL
#undef vf
#undef SFX
#undef vload
#undef vstore
#undef vloadn
#undef vstoren
#undef vset
#undef vadd
#undef vsub
#undef vmul
#undef vdiv
#undef vmax
#undef vmin
#undef vmadd
#undef vfma
#undef vround
#undef vpow2i
#undef vhsum
#undef vhmax
#undef vdf
#undef vdzero
#undef vdadd
#undef vdsqdev
#undef vdhsum
#undef PD_SIMD_FMA
