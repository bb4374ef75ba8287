//! Every JSON request body the service parses, on arbitrary bytes: parsing and each
//! body's validation must never panic, and whatever passes must keep within its bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use packages_domain::{context, validation};

fuzz_target!(|body: &[u8]| {
    let Ok(object) = validation::parse_object(body) else {
        return;
    };
    if let Ok(create) = validation::package_create("app-guid", &object) {
        assert!(
            create
                .url
                .is_none_or(|u| u.chars().count() <= validation::MAX_DOCKER_URL)
        );
    }
    if let Ok(org) = context::org_create(&object) {
        assert!(org.name.chars().count() <= 255);
    }
    if let Ok(space) = context::space_create(&object) {
        assert!(space.name.chars().count() <= 255);
    }
    if let Ok(app) = context::app_create(&object) {
        assert!(app.name.chars().count() <= 255);
    }
    let _ = context::role_create(&object);
});
