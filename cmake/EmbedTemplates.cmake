# Embeds kernel templates into a generated C++ source, so the installed library needs no
# source tree and each template's SHA-256 is a compile-time constant (it enters kernel keys).
function(mlajit_embed_templates out_cpp)
  set(files ${ARGN})
  add_custom_command(
    OUTPUT ${out_cpp}
    COMMAND ${CMAKE_COMMAND} -DOUT=${out_cpp} -DROOT=${CMAKE_CURRENT_SOURCE_DIR}
            "-DFILES=${files}" -P ${PROJECT_SOURCE_DIR}/cmake/EmbedTemplatesScript.cmake
    DEPENDS ${files} ${PROJECT_SOURCE_DIR}/cmake/EmbedTemplatesScript.cmake
    COMMENT "Embedding kernel templates"
    VERBATIM)
endfunction()
