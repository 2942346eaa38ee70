//! Who may see and do what: the one home of every access rule.
//!
//! Every path that reads or writes rooms, categories, add-ins or messages (list, get, history,
//! search, live events and their replay, export, the state, every write) asks these functions;
//! none decides on its own. They are pure: the caller loads the room, its category and the
//! groups the lists name, and passes them in, so that a rule costs what one request touches.

use super::{Category, Directory, Principal, Privacy, Room, RoomType};

/// Who is asking, as the rules see it.
#[derive(Clone, Copy, Debug)]
pub enum Viewer<'a> {
    /// `CsPersistentChatAdministrator`: sees everything; posts only where a user would.
    Admin(Option<&'a Principal>),
    /// Everyone else: acts through the room and category roles its principal holds.
    User(&'a Principal),
}

impl<'a> Viewer<'a> {
    pub fn is_admin(self) -> bool {
        matches!(self, Viewer::Admin(_))
    }

    /// The caller as a principal; the embedded operator has none.
    pub fn principal(self) -> Option<&'a Principal> {
        match self {
            Viewer::Admin(principal) => principal,
            Viewer::User(principal) => Some(principal),
        }
    }
}

/// A caller's standing toward one room.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoomRights {
    /// May find the room: get it, list it, hear of its changes. Others are told "not found".
    pub sees: bool,
    /// Holds the Member role: reads and (in a normal room) posts.
    pub member: bool,
    /// Posts in an auditorium.
    pub presenter: bool,
    /// Changes the room's settings and lists.
    pub manager: bool,
    /// Reads the room's stored history (and its replayed events). A disabled room hides from
    /// its members, so only its managers who are members still read it.
    pub reads: bool,
}

/// The rights of `viewer` in `room`, whose category is `category`.
///
/// An open room's members are everyone in the category's scope; closed and secret rooms'
/// members are those the room lists, within that scope. A manager sees the room whatever its
/// state (to manage it), but the Manager role grants no reading or posting. A disabled room is
/// hidden from everyone but its managers and administrators. Administrators see and read every
/// room.
pub fn room_rights(
    viewer: Viewer<'_>,
    room: &Room,
    category: &Category,
    directory: &Directory,
) -> RoomRights {
    let admin = viewer.is_admin();
    let Some(me) = viewer.principal() else {
        // The embedded operator administers; it is a member of nothing.
        return RoomRights {
            sees: admin,
            reads: admin,
            ..RoomRights::default()
        };
    };
    let in_scope = category.admits(directory, me);
    let listed = directory.covers(&room.members, me);
    let member = in_scope && (room.privacy == Privacy::Open || listed);
    let presenter = member && directory.covers(&room.presenters, me);
    let manager = directory.covers(&room.managers, me);
    let sees = admin
        || manager
        || (!room.disabled && in_scope && (room.privacy != Privacy::Secret || listed));
    RoomRights {
        sees,
        member,
        presenter,
        manager,
        reads: sees && (admin || member),
    }
}

/// The only users, other than administrators, who may read `room`, when its lists say so: the
/// room is not open, and its members list users and groups, not domains
/// ([`Directory::users_named_by`]: the users it names, through its groups too). `None` when
/// anyone might (an open room admits its whole scope; a domain takes in users no list names).
///
/// # Guarantees
/// For every caller who is not an administrator and whose principal is a user, with any
/// category: `room_rights(.., directory).reads` implies the caller is in the list returned
/// (reading needs membership, and a closed or secret room's members are those its list
/// covers). A judge that must never be stricter than [`room_rights`] (the node's hub,
/// choosing which streams to wake) may pass over everyone else without judging them.
/// `only_named_users_read_matches_room_rights` checks it against `room_rights`.
pub fn readers_if_named_only<'a>(
    room: &'a Room,
    directory: &'a Directory,
) -> Option<Vec<&'a Principal>> {
    if room.privacy == Privacy::Open {
        return None;
    }
    directory.users_named_by(&room.members)
}

/// Why a post is refused, for a caller that sees the room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostRefusal {
    Disabled,
    NotMember,
    NotPresenter,
}

/// Whether the holder of `rights` may post in `room`.
///
/// # Errors
/// The first rule the post breaks: nobody posts in a disabled room, only members post, and
/// only presenters post in an auditorium.
pub fn may_post(rights: RoomRights, room: &Room) -> Result<(), PostRefusal> {
    if room.disabled {
        Err(PostRefusal::Disabled)
    } else if !rights.member {
        Err(PostRefusal::NotMember)
    } else if room.room_type == RoomType::Auditorium && !rights.presenter {
        Err(PostRefusal::NotPresenter)
    } else {
        Ok(())
    }
}

/// Whether a live stream delivers a message of a room its reader may read.
///
/// A category without chat history delivers its messages live only and keeps them for
/// compliance: they are never read back, neither from history nor by a stream that replays
/// what was stored before it opened (`Last-Event-ID`).
pub fn stream_delivers(in_history: bool, live: bool) -> bool {
    in_history || live
}

/// Whether `viewer` finds a category: it is in the category's scope or creates rooms in it.
pub fn sees_category(viewer: Viewer<'_>, category: &Category, directory: &Directory) -> bool {
    match viewer {
        Viewer::Admin(_) => true,
        Viewer::User(me) => {
            category.admits(directory, me) || directory.covers(&category.creators, me)
        }
    }
}

/// Whether `viewer` finds an add-in, given the rights it has in each room that shows it: an
/// add-in is visible through the rooms one sees.
pub fn sees_addin(
    viewer: Viewer<'_>,
    rooms_showing_it: impl IntoIterator<Item = RoomRights>,
) -> bool {
    viewer.is_admin() || rooms_showing_it.into_iter().any(|rights| rights.sees)
}

/// Every user sees every group: groups are the directory, not a secret.
pub fn sees_group(_viewer: Viewer<'_>) -> bool {
    true
}

/// Whether `viewer` may create a room in `category`: administrators, and the category's
/// creators who are within its scope.
pub fn may_create_room(viewer: Viewer<'_>, category: &Category, directory: &Directory) -> bool {
    match viewer {
        Viewer::Admin(_) => true,
        Viewer::User(me) => {
            category.admits(directory, me) && directory.covers(&category.creators, me)
        }
    }
}

/// Why a change of a room is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeRefusal {
    /// Only administrators and the room's managers change it.
    NotManager,
    /// A manager moves a room only into a category it creates rooms in.
    NotCreatorOfNewCategory,
}

/// Whether `viewer` may change `old` into a room in `new_category`.
///
/// # Errors
/// A caller who manages neither the room nor (when it moves) the new category.
pub fn may_change_room(
    viewer: Viewer<'_>,
    old: &Room,
    new_category: &Category,
    directory: &Directory,
) -> Result<(), ChangeRefusal> {
    let Viewer::User(me) = viewer else {
        return Ok(());
    };
    if !directory.covers(&old.managers, me) {
        return Err(ChangeRefusal::NotManager);
    }
    if old.category != new_category.name && !directory.covers(&new_category.creators, me) {
        return Err(ChangeRefusal::NotCreatorOfNewCategory);
    }
    Ok(())
}

/// Ownership marks (`managed`, `protect`) say what the administrators' reconciler owns; only
/// administrators set them.
pub fn may_set_marks(viewer: Viewer<'_>) -> bool {
    viewer.is_admin()
}

/// The entries of `list` that fall outside `category`'s scope (not allowed, or denied) and
/// were not in `previous`.
///
/// The cmdlets checked only what a change added, so entries a room or category already holds
/// pass; a whole desired state (the manifests) passes an empty `previous` and so checks every
/// entry.
pub fn outside_scope<'a>(
    category: &Category,
    directory: &Directory,
    list: &'a [Principal],
    previous: &[Principal],
) -> Vec<&'a Principal> {
    list.iter()
        .filter(|principal| !previous.contains(principal) && !category.admits(directory, principal))
        .collect()
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};

    use super::*;

    fn p(text: &str) -> Principal {
        Principal::parse(text).unwrap()
    }

    fn category() -> Category {
        Category {
            name: "Eng".to_owned(),
            description: String::new(),
            allowed_members: vec![p("domain:contoso.com")],
            denied_members: vec![p("sip:mallory@contoso.com")],
            creators: vec![p("sip:cara@contoso.com")],
            invitations: false,
            file_upload: false,
            chat_history: true,
            retention: None,
        }
    }

    fn room(privacy: Privacy, room_type: RoomType, disabled: bool) -> Room {
        Room {
            name: "r".to_owned(),
            category: "Eng".to_owned(),
            description: String::new(),
            privacy,
            room_type,
            addin: None,
            invitations: crate::domain::RoomInvitations::Inherit,
            disabled,
            members: vec![p("sip:mia@contoso.com"), p("sip:mallory@contoso.com")],
            managers: vec![p("sip:max@contoso.com")],
            presenters: vec![p("sip:mia@contoso.com")],
        }
    }

    /// [`readers_if_named_only`] never leaves out a reader: over rooms of every privacy,
    /// disabled or not, whose lists name the caller, a group or domain holding it, or neither,
    /// and callers in and out of scope, denied, managers and presenters not members, whoever
    /// `room_rights` lets read is named (administrators aside).
    #[test]
    fn only_named_users_read_matches_room_rights() {
        let directory = Directory::new([
            ("team".to_owned(), vec![p("sip:ivan@contoso.com")]),
            ("empty".to_owned(), Vec::new()),
            (
                "teams".to_owned(),
                vec![p("group:team"), p("sip:max@contoso.com")],
            ),
            (
                "everyone".to_owned(),
                vec![p("domain:contoso.com"), p("group:teams")],
            ),
            ("loop".to_owned(), vec![p("group:loop"), p("group:team")]),
        ]);
        let category = category();
        let callers = [
            "sip:mia@contoso.com",
            "sip:ivan@contoso.com",
            "sip:max@contoso.com",
            "sip:mallory@contoso.com",
            "sip:olga@fabrikam.com",
        ]
        .map(p);
        let lists: [Vec<Principal>; 10] = [
            Vec::new(),
            vec![p("sip:mia@contoso.com")],
            vec![p("sip:mia@contoso.com"), p("sip:mallory@contoso.com")],
            vec![p("group:team")],
            vec![p("domain:contoso.com"), p("sip:olga@fabrikam.com")],
            vec![p("group:empty"), p("sip:max@contoso.com")],
            vec![p("group:teams")],
            vec![p("group:everyone")],
            vec![p("group:loop"), p("group:missing")],
            vec![p("group:team"), p("group:teams"), p("sip:mia@contoso.com")],
        ];
        let mut judged = 0;
        let mut named_only = 0;
        for privacy in [Privacy::Open, Privacy::Closed, Privacy::Secret] {
            for disabled in [false, true] {
                for members in &lists {
                    for others in &lists {
                        let mut room = room(privacy, RoomType::Normal, disabled);
                        room.members.clone_from(members);
                        room.managers.clone_from(others);
                        room.presenters.clone_from(others);
                        let named = readers_if_named_only(&room, &directory);
                        named_only += usize::from(named.is_some());
                        for caller in &callers {
                            judged += 1;
                            let reads =
                                room_rights(Viewer::User(caller), &room, &category, &directory)
                                    .reads;
                            if let Some(named) = &named {
                                assert!(
                                    !reads || named.contains(&caller),
                                    "{caller} reads {room:?} without being named"
                                );
                            }
                        }
                    }
                }
            }
        }
        // The matrix judged something on both sides of the condition.
        assert_eq!((judged, named_only), (3000, 320));
    }

    /// One row per caller: `sees member presenter manager reads post`.
    #[allow(
        clippy::needless_pass_by_value,
        reason = "expect-test hands snapshots by value"
    )]
    fn check(room: &Room, expect: Expect) {
        let directory = Directory::default();
        let category = category();
        let [admin, member, in_scope, manager, denied, outsider] = [
            "sip:admin@contoso.com",
            "sip:mia@contoso.com",
            "sip:ivan@contoso.com",
            "sip:max@contoso.com",
            "sip:mallory@contoso.com",
            "sip:olga@fabrikam.com",
        ]
        .map(p);
        let callers = [
            ("admin", Viewer::Admin(Some(&admin))),
            ("operator", Viewer::Admin(None)),
            ("member", Viewer::User(&member)),
            ("in-scope", Viewer::User(&in_scope)),
            ("manager", Viewer::User(&manager)),
            ("denied", Viewer::User(&denied)),
            ("outsider", Viewer::User(&outsider)),
        ];
        let mut table = String::new();
        for (name, viewer) in callers {
            let rights = room_rights(viewer, room, &category, &directory);
            let flag = |on: bool, letter: &str| {
                if on {
                    letter.to_owned()
                } else {
                    "-".to_owned()
                }
            };
            let post = match may_post(rights, room) {
                Ok(()) => "post".to_owned(),
                Err(refusal) => format!("{refusal:?}"),
            };
            table.push_str(&format!(
                "{name:9} {}{}{}{}{} {post}\n",
                flag(rights.sees, "s"),
                flag(rights.member, "m"),
                flag(rights.presenter, "p"),
                flag(rights.manager, "M"),
                flag(rights.reads, "r"),
            ));
        }
        expect.assert_eq(&table);
    }

    #[test]
    fn open_room() {
        check(
            &room(Privacy::Open, RoomType::Normal, false),
            expect![[r"
                admin     sm--r post
                operator  s---r NotMember
                member    smp-r post
                in-scope  sm--r post
                manager   sm-Mr post
                denied    ----- NotMember
                outsider  ----- NotMember
            "]],
        );
    }

    #[test]
    fn secret_room() {
        check(
            &room(Privacy::Secret, RoomType::Normal, false),
            expect![[r"
                admin     s---r NotMember
                operator  s---r NotMember
                member    smp-r post
                in-scope  ----- NotMember
                manager   s--M- NotMember
                denied    ----- NotMember
                outsider  ----- NotMember
            "]],
        );
    }

    #[test]
    fn disabled_auditorium() {
        check(
            &room(Privacy::Closed, RoomType::Auditorium, true),
            expect![[r"
                admin     s---r Disabled
                operator  s---r Disabled
                member    -mp-- Disabled
                in-scope  ----- Disabled
                manager   s--M- Disabled
                denied    ----- Disabled
                outsider  ----- Disabled
            "]],
        );
        check(
            &room(Privacy::Closed, RoomType::Auditorium, false),
            expect![[r"
                admin     s---r NotMember
                operator  s---r NotMember
                member    smp-r post
                in-scope  s---- NotMember
                manager   s--M- NotMember
                denied    ----- NotMember
                outsider  ----- NotMember
            "]],
        );
    }

    #[test]
    fn scope_checks_only_new_entries() {
        let category = category();
        let list = vec![p("sip:olga@fabrikam.com"), p("sip:ivan@contoso.com")];
        let outside = outside_scope(&category, &Directory::default(), &list, &[]);
        assert_eq!(outside, vec![&p("sip:olga@fabrikam.com")]);
        let previous = vec![p("sip:olga@fabrikam.com")];
        assert!(outside_scope(&category, &Directory::default(), &list, &previous).is_empty());
    }
}
