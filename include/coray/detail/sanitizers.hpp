#pragma once
/// Which sanitizer this translation unit is built under, for g++ (__SANITIZE_ADDRESS__,
/// __SANITIZE_THREAD__) and clang (__has_feature): CORAY_DETAIL_ASAN and CORAY_DETAIL_TSAN,
/// each 1 or 0.

#if defined(__SANITIZE_ADDRESS__)
#define CORAY_DETAIL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CORAY_DETAIL_ASAN 1
#endif
#endif
#ifndef CORAY_DETAIL_ASAN
#define CORAY_DETAIL_ASAN 0
#endif

#if defined(__SANITIZE_THREAD__)
#define CORAY_DETAIL_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CORAY_DETAIL_TSAN 1
#endif
#endif
#ifndef CORAY_DETAIL_TSAN
#define CORAY_DETAIL_TSAN 0
#endif
